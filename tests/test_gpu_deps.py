"""GPU-only packages fail with a message that names the feature and requirements-gpu.txt."""

import pytest

from recipekit.gpu_deps import MissingGpuPackage, require_gpu_package


def test_missing_gpu_package_names_the_requirements_file():
    with pytest.raises(MissingGpuPackage, match=r"vLLM generation.*requirements-gpu\.txt"):
        require_gpu_package("surely_not_installed_pkg", "vLLM generation")


def test_present_package_is_returned():
    assert require_gpu_package("json", "anything").dumps([1]) == "[1]"
