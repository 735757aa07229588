import types

import featurefields


def test_public_names_resolve_and_do_not_shadow_subpackages():
    for name in featurefields.__all__:
        assert getattr(featurefields, name) is not None, name
    for sub in ("data", "teachers", "fields", "render", "train", "cli", "scenegen"):
        assert isinstance(getattr(featurefields, sub, None) or __import__(f"featurefields.{sub}"), types.ModuleType)
    import featurefields.render.brute  # noqa: F401  (a re-exported name must not hide the subpackage)

    assert isinstance(featurefields.render, types.ModuleType)
