"""Part 1: Dask's own contract test for foreign ``get`` functions."""

from __future__ import annotations

import pytest
from dask.utils_test import GetFunctionTestMixin

from scaler_dask import scaler_get

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("scaler_config")]


class TestScalerGet(GetFunctionTestMixin):
    get = staticmethod(scaler_get)
