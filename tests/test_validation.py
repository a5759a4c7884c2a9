import numpy as np
import pytest

from softmix._validation import check_array, check_float, check_int, check_random_state


def test_random_state_forms():
    g = np.random.default_rng(1)
    assert check_random_state(g) is g
    assert check_random_state(3).integers(100) == np.random.default_rng(3).integers(100)
    with pytest.raises(TypeError, match="random_state"):
        check_random_state("seed")
    with pytest.raises(ValueError, match="random_state"):
        check_random_state(-1)


def test_check_array_messages_name_the_argument():
    with pytest.raises(ValueError, match="features contains 1 NaN"):
        check_array([[1.0, np.nan]], "features", ndim=2)
    with pytest.raises(ValueError, match="features must be 2-D"):
        check_array([1.0, 2.0], "features", ndim=2)
    with pytest.raises(TypeError, match="features must hold real numbers"):
        check_array([["a"]], "features", ndim=2)


def test_check_array_none_and_sparse_say_what_to_do():
    # before: both "must hold real numbers, got dtype object" (np.asarray wraps them in objects)
    import scipy.sparse

    with pytest.raises(TypeError, match="y is required, got None"):
        check_array(None, "y", ndim=1)
    with pytest.raises(TypeError, match=r"X is a sparse csr_matrix.*X\.toarray\(\)"):
        check_array(scipy.sparse.csr_matrix(np.eye(3)), "X", ndim=2)


def test_scalars():
    with pytest.raises(TypeError, match="n_components"):
        check_int(2.5, "n_components")
    with pytest.raises(ValueError, match="n_components must be >= 1"):
        check_int(0, "n_components", low=1)
    with pytest.raises(ValueError, match="step must be > 0"):
        check_float(0.0, "step", low=0.0, low_inclusive=False)
    with pytest.raises(ValueError, match="finite"):
        check_float(float("inf"), "step")


@pytest.mark.parametrize("bad, error", [(0.0, ValueError), (-1.0, ValueError),
                                        (float("nan"), ValueError), (float("inf"), ValueError),
                                        ("0.1", TypeError), (True, TypeError)])
def test_check_step_size_names_the_argument_and_the_remedy(bad, error):
    from softmix._validation import check_step_size

    with pytest.raises(error, match=r"step_gate .*e\.g\. step_gate=0\.5"):
        check_step_size(bad, "step_gate")
    assert check_step_size(0.25, "step_gate") == 0.25
