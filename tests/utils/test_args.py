"""Specification of hirescam_ext.utils.args.as_bool: switches that arrive as strings from the command line."""

from __future__ import annotations

import pytest

from hirescam_ext.utils.args import as_bool


@pytest.mark.parametrize("value", ["false", "False", "FALSE", " no ", "off", "0", 0, False])
def test_false_spellings_are_false(value):
    assert as_bool(value, "use_mask_loss") is False


@pytest.mark.parametrize("value", ["true", "True", "yes", "on", "1", 1, True])
def test_true_spellings_are_true(value):
    assert as_bool(value, "use_mask_loss") is True


@pytest.mark.parametrize("value", ["flase", "", 2, None, 0.5, [False]])
def test_other_values_raise_naming_the_switch(value):
    with pytest.raises(ValueError, match="custom_convs must be true or false"):
        as_bool(value, "custom_convs")
