"""The validation layer: finite, in range, of the right type and shape, with one-line messages naming the value."""
from __future__ import annotations

import argparse
import math

import pytest
import torch

from featurefields.errors import ConfigError, DataError
from featurefields.validate import arg, image_size, integer, number, tensor, text


def test_number():
    assert number("0.5", "--x", lo=0, hi=1) == 0.5
    for bad, needle in ((math.nan, "not a finite number"), (math.inf, "not a finite number"), ("abc", "expected a number"),
                        (None, "expected a number"), (True, "expected a number"), (2.0, "out of range"),
                        ([1], "expected a number")):
        with pytest.raises(ConfigError, match=needle) as e:
            number(bad, "--x", lo=0, hi=1)
        assert str(e.value).startswith("--x: ")
    with pytest.raises(ConfigError, match=r"must be > 0"):
        number(0, "--w", lo=0, lo_open=True)
    with pytest.raises(DataError, match="1e\\+300"):
        number(1e300, "fl_x", hi=1e6, error=DataError)


def test_integer():
    assert integer("5", "--n", lo=1) == 5 and integer(5.0, "--n") == 5
    for bad in (5.5, math.nan, "5.5", True, "x", 1e400):
        with pytest.raises(ConfigError, match="whole number"):
            integer(bad, "--n")
    with pytest.raises(ConfigError, match=r"--latent-dim: -3 is out of range \(must be in \[0, 1024\]\)"):
        integer(-3, "--latent-dim", lo=0, hi=1024)


def test_text_refuses_bytes_that_are_not_utf8():
    assert text("red mug", "query") == "red mug"
    argv_bytes = b"mug \xff".decode("utf-8", "surrogateescape")  # what Python makes of a non-UTF-8 argument
    with pytest.raises(ConfigError, match=r"query: not valid UTF-8 text \(byte b'\\xff' at character 4\)"):
        text(argv_bytes, "query")
    with pytest.raises(ConfigError, match="expected text"):
        text(3, "query")


def test_image_size_limits():
    assert image_size(64, 48.0, "cam") == (64, 48)
    for w, h, needle in ((1e30, 48, "width: 1e\\+30 is out of range"), (0, 48, "width: 0"), (60000, 60000, "width"),
                         (10000, 10000, "more than the limit"), ("wide", 4, "whole number")):
        with pytest.raises(DataError, match=needle):
            image_size(w, h, "cam")


def test_tensor_shapes_and_values():
    t = torch.zeros(4, 3)
    assert tensor(t, "means", (None, 3)) is t
    for bad, needle in (("oops", "expected a tensor"), (torch.zeros(4, 2), "shape 4x2, expected Nx3"),
                        (torch.zeros(4, 3, dtype=torch.long), "dtype int64, expected float"),
                        (torch.tensor([[0.0, math.nan, 0.0]]), "1 of 3 values are NaN/inf")):
        with pytest.raises(DataError, match=needle):
            tensor(bad, "means", (None, 3))
    assert tensor(torch.ones(3, dtype=torch.bool), "mask", (None,), kind="bool").dtype == torch.bool


def test_arg_is_an_argparse_type_that_names_the_flag():
    from featurefields.cli import ArgParser

    p = ArgParser(prog="ff-x")
    p.add_argument("--threshold", type=arg(number, lo=0, hi=1))
    assert p.parse_args(["--threshold", "0.25"]).threshold == 0.25
    with pytest.raises(ConfigError, match=r"ff-x: argument --threshold: nan is not a finite number"):
        p.parse_args(["--threshold", "nan"])
    with pytest.raises(argparse.ArgumentTypeError):
        arg(integer, lo=1)("0")
