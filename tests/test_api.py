import importlib
import types

import featurefields


def test_public_names_resolve_and_do_not_shadow_subpackages():
    for name in featurefields.__all__:
        assert getattr(featurefields, name) is not None, name
    for sub in ("data", "teachers", "fields", "render", "train", "cli", "scenegen", "query", "localize"):
        importlib.import_module(f"featurefields.{sub}")
        # a re-exported function must not hide the subpackage of the same name
        assert isinstance(getattr(featurefields, sub), types.ModuleType), sub
    importlib.import_module("featurefields.render.brute")
