"""Hostile inputs at every public entry point: estimators (each expert type and solver), public
functions and the CLI. Each case gives an exception naming the argument, raised by softmix
code (never a traceback ending inside NumPy/SciPy), or a finite result with a warning; never
NaN."""

from __future__ import annotations

import re
import traceback
import warnings

import numpy as np
import pytest

import softmix
from softmix import MixtureOfExperts, SoftmaxMixture, SoftmixWarning, datasets, metrics
from softmix.cli import main as cli_main
from softmix.moe.model import MoEParams
from softmix.softmax_mixture import (
    SoftmaxMixtureParams,
    log_class_probabilities,
    log_likelihood,
    log_mixture_probabilities,
    log_responsibilities,
)
from softmix.softmax_mixture.mom import method_of_moments

# --------------------------------------------------------------------------- data
_SMM = datasets.make_softmax_mixture(2_000, 40, 2, 2, return_choices=False, random_state=0)
F, N = _SMM.features, _SMM.counts
P2 = SoftmaxMixtureParams(np.array([0.4, 0.6]), np.array([[1.0, 0.0], [-1.0, 0.5]]))
_rng = np.random.default_rng(1)
X = _rng.normal(size=(120, 2))
Y = {
    "gaussian": X @ [1.0, -1.0] + 0.3 * _rng.normal(size=120),
    "logistic": (X[:, 0] + _rng.normal(size=120) > 0).astype(int),
    "multinomial": np.digitize(X[:, 0] + 0.5 * _rng.normal(size=120), [-0.5, 0.5]),
}
EXPERTS = tuple(Y)
SOLVERS = ("em", "gd", "gradient_em")


def _with(arr, index, value, dtype=float):
    out = np.array(arr, dtype=dtype)
    out[index] = value
    return out


def _last_frame_module(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    tb = exc.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert frames
    return tb.tb_frame.f_globals.get("__name__", "?")


def raises_naming(call, name: str, *types: type[BaseException]):
    """``call()`` raises ValueError/TypeError (or ``types``) from softmix code, naming ``name``."""
    types = types or (ValueError, TypeError)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftmixWarning)
        try:
            call()
        except types as exc:
            module = _last_frame_module(exc)
            assert module.startswith("softmix"), (
                f"raised from {module}, not from softmix's own checks: {exc!r}")
            assert re.search(rf"\b{re.escape(name)}\b", str(exc)), (
                f"message does not name {name!r}: {exc}")
            return exc
    pytest.fail(f"no exception naming {name!r}")


def _finite(value) -> None:
    if isinstance(value, (SoftmaxMixture, MixtureOfExperts)):
        value = np.concatenate([np.ravel(a) for a in _params_arrays(value)]
                               + [[value.log_likelihood_]])
    value = np.asarray(value, dtype=float)
    assert np.all(np.isfinite(value)), value


def _params_arrays(model):
    p = model.params_
    if isinstance(p, SoftmaxMixtureParams):
        return [p.weights, p.atoms]
    out = [p.gating, p.expert_coef]
    return out + ([] if p.expert_variance is None else [p.expert_variance])


def finite_with_warning(call, match, warning=SoftmixWarning):
    """``call()`` warns (a ``warning`` whose message matches ``match``) and returns a finite
    result."""
    with pytest.warns(warning, match=match):
        result = call()
    _finite(result)
    return result


# --------------------------------------------------------------------------- SoftmaxMixture
def smm(**kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 30)
    return SoftmaxMixture(kw.pop("n_components", 2), **kw)


BAD_FEATURES = {
    "none": None,
    "string": "abc",
    "ragged": [[1.0, 2.0], [3.0]],
    "object": np.array([[1.0, "a"]] * 40, dtype=object),
    "complex": F + 1j,
    "nan": _with(F, (3, 1), np.nan),
    "inf": _with(F, (0, 0), np.inf),
    "1-D": F[:, 0],
    "3-D": F[None],
    "no rows": np.zeros((0, 2)),
    "one row": F[:1],
    "no columns": np.zeros((40, 0)),
}


@pytest.mark.parametrize("case", sorted(BAD_FEATURES))
def test_smm_bad_features(case):
    raises_naming(lambda: smm().fit(BAD_FEATURES[case], counts=N), "features")


BAD_COUNTS = {
    "nan": _with(N, 2, np.nan),
    "inf": _with(N, 2, np.inf),
    "negative": _with(N, 2, -3),
    "non-integer": _with(N, 2, 1.5),
    "bool": N > 0,
    "complex": N + 0j,
    "object": N.astype(object),
    "string": N.astype(str),
    "wrong length": N[:-1],
    "3-D": N[None, None],  # (a 2-D (n_groups, p) matrix is a panel: issue 12)
    "wrong width 2-D": N[None, :-1],
    "all zero": np.zeros_like(N),
    "empty": np.zeros(0),
}


@pytest.mark.parametrize("case", sorted(BAD_COUNTS))
def test_smm_bad_counts(case):
    raises_naming(lambda: smm().fit(F, counts=BAD_COUNTS[case]), "counts")


BAD_CHOICES = {
    "negative label": np.array([0, 1, -1]),
    "label = p": np.array([0, 1, 40]),
    "non-integer": np.array([0.0, 1.5]),
    "nan": np.array([0.0, np.nan]),
    "bool": np.array([True, False]),
    "2-D": np.array([[0, 1]]),
    "empty": np.zeros(0, dtype=int),
    "string": np.array(["a", "b"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CHOICES))
def test_smm_bad_choices(case):
    raises_naming(lambda: smm().fit(F, BAD_CHOICES[case]), "choices")


def test_smm_needs_exactly_one_of_choices_or_counts():
    raises_naming(lambda: smm().fit(F), "choices")
    raises_naming(lambda: smm().fit(F, np.array([0, 1]), counts=N), "counts")


BAD_SMM_HYPER = [
    ("n_components", 0), ("n_components", 2.5), ("n_components", "2"), ("n_components", True),
    ("n_components", 41),  # K > p alternatives: more than the data can support
    ("n_init", 0), ("max_iter", -1), ("max_iter", 1.5), ("tol", -1.0), ("tol", np.nan),
    ("tol", "small"), ("init", "bogus"), ("m_step", "bogus"), ("step_size", 0.0),
    ("random_state", "seed"), ("random_state", -1), ("dtype", "int8"), ("accelerate", "x"),
    ("newton_max_iter", 0), ("callback", 3),
]


@pytest.mark.parametrize(("name", "value"), BAD_SMM_HYPER)
def test_smm_bad_hyperparameters(name, value):
    kw = {name: value}
    raises_naming(lambda: smm(**kw).fit(F, counts=N), name)


def test_smm_given_init_of_the_wrong_shape():
    bad = SoftmaxMixtureParams(np.array([0.5, 0.5]), np.zeros((2, 3)))
    raises_naming(lambda: smm(init=bad).fit(F, counts=N), "init")


def test_smm_one_sample_is_finite():
    one = np.zeros(40)
    one[7] = 1
    _finite(smm().fit(F, counts=one))


def test_smm_duplicated_and_constant_columns_warn_and_stay_finite():
    dup = np.column_stack([F, F[:, 0]])
    const = np.column_stack([F, np.full(40, 3.0)])
    for design in (dup, const):
        model = finite_with_warning(lambda d=design: smm().fit(d, counts=N), "unidentified")
        assert model.n_unidentified_ == 1


@pytest.mark.parametrize("scale", [
    1e-150, 1e-50, 1e50, 1e150,
    # base: NumPy's overflow in the design covariance, then "every column is constant"
    1e160,
])
def test_smm_extreme_scales(scale):
    """Tiny or huge features: a finite fit (possibly with a warning) or an error naming
    features; never NaN or a NumPy traceback."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SoftmixWarning)
            model = smm().fit(F * scale, counts=N)
    except (ValueError, TypeError):
        raises_naming(lambda: smm().fit(F * scale, counts=N), "features")
        return
    _finite(model)


def test_smm_fitted_methods_reject_bad_input():
    model = smm().fit(F, counts=N)
    raises_naming(lambda: model.predict_proba(np.array([0, 40])), "choices")
    raises_naming(lambda: model.predict_proba(np.array([0.5])), "choices")
    raises_naming(lambda: model.score(F[:, :1], counts=N), "features")
    raises_naming(lambda: model.score(counts=_with(N, 0, -1)), "counts")
    raises_naming(lambda: model.sample(-1), "n_samples")
    raises_naming(lambda: model.sample(2.5), "n_samples")
    raises_naming(lambda: model.sample(5, random_state="x"), "random_state")
    raises_naming(lambda: SoftmaxMixture(2).predict_proba(np.array([0])), "fit",
                  softmix.NotFittedError)


# --------------------------------------------------------------------------- MixtureOfExperts
def moe(expert="gaussian", solver="em", **kw):
    kw.setdefault("random_state", 0)
    kw.setdefault("max_iter", 20)
    return MixtureOfExperts(kw.pop("n_experts", 2), expert=expert, solver=solver, **kw)


BAD_X = {
    "none": None,
    "string": "abc",
    "object": X.astype(object),
    "complex": X + 1j,
    "nan": _with(X, (5, 1), np.nan),
    "inf": _with(X, (5, 0), -np.inf),
    "1-D": X[:, 0],
    "no rows": np.zeros((0, 2)),
    "no columns": np.zeros((120, 0)),
    "1e150": X * 1e150,
}


@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", sorted(BAD_X))
def test_moe_bad_X(case, expert, solver):
    raises_naming(lambda: moe(expert, solver).fit(BAD_X[case], Y[expert]), "X")


def _bad_y(expert):
    y = Y[expert]
    cases = {
        "none": None,
        "wrong length": y[:-1],
        "2-D": np.column_stack([y, y]),
        "nan": _with(y, 3, np.nan),
        "inf": _with(y, 3, np.inf),
        "complex": y + 1j,
        "object": np.array([object()] * len(y), dtype=object),
        "empty": y[:0],
    }
    if expert == "gaussian":
        cases["1e200"] = y * 1e200
    else:
        cases["non-integer labels"] = _with(y, 0, 0.5)
        cases["one class"] = np.zeros_like(y)
    if expert == "logistic":
        # any two labels are accepted (issue 12: "yes"/"no", {0, 2}); three are not
        cases["a third label"] = _with(y, 0, 2, dtype=int)
        cases["three text labels"] = np.where(y == 1, "yes", "no").astype(object)
        cases["three text labels"][0] = "maybe"
        cases["three text labels"] = cases["three text labels"].astype(str)
    return cases


@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("solver", SOLVERS)
def test_moe_bad_y(expert, solver):
    for case, y in _bad_y(expert).items():
        exc = raises_naming(lambda y=y: moe(expert, solver).fit(X, y), "y")
        assert exc is not None, case


BAD_MOE_HYPER = [
    ("n_experts", 0), ("n_experts", 1.5), ("n_experts", "2"), ("n_experts", True),
    ("n_experts", 60),  # far more parameters than 120 samples support
    ("expert", "poisson"), ("solver", "bfgs"), ("init", "bogus"), ("n_init", 0),
    ("max_iter", -2), ("tol", -1.0), ("tol", np.inf), ("ridge", -1.0), ("ridge", np.nan),
    ("random_state", 1.5), ("callback", "print"),
]


@pytest.mark.parametrize(("name", "value"), BAD_MOE_HYPER)
def test_moe_bad_hyperparameters(name, value):
    kw = {name: value}
    expert = kw.pop("expert", "gaussian")
    solver = kw.pop("solver", "em")
    model = MixtureOfExperts(kw.pop("n_experts", 2), expert=expert, solver=solver,
                             random_state=kw.pop("random_state", 0), **kw)
    raises_naming(lambda: model.fit(X, Y["gaussian"]), name)


@pytest.mark.parametrize("solver", SOLVERS)
def test_moe_bad_step_size(solver):
    if solver == "em":
        pytest.skip("EM has no step size")
    name = "step_size" if solver == "gd" else "step_w"
    for value in (0.0, -1.0, np.nan, "big"):
        raises_naming(lambda v=value: moe(solver=solver, **{name: v}).fit(X, Y["gaussian"]),
                      name)


def test_moe_unknown_solver_option_is_named():
    raises_naming(lambda: moe(step_sise=0.1, solver="gd").fit(X, Y["gaussian"]), "step_sise")


@pytest.mark.parametrize("expert", EXPERTS)
def test_moe_one_sample_and_too_few_samples(expert):
    # one sample has one class: the labels are blamed first for logistic/multinomial experts
    raises_naming(lambda: moe(expert).fit(X[:1], Y[expert][:1]),
                  "n_experts" if expert == "gaussian" else "y")
    raises_naming(lambda: moe(expert).fit(X[:6], Y["logistic"][:6]), "n_experts")


@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize("column", ["constant", "duplicated"])
def test_moe_collinear_column_is_finite_with_a_warning_naming_it(expert, column):
    """A column collinear with the intercept or another column: a finite fit and a warning
    naming the column (base: silent)."""
    extra = np.full(len(X), 5.0) if column == "constant" else X[:, 0]
    finite_with_warning(lambda: moe(expert, max_iter=200).fit(np.column_stack([X, extra]),
                                                              Y[expert]), r"column")


@pytest.mark.parametrize("scale", [1e-150, 1e-50, 1e50])
@pytest.mark.parametrize("expert", EXPERTS)
def test_moe_extreme_scales_are_finite(scale, expert):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SoftmixWarning)
        _finite(moe(expert).fit(X * scale, Y[expert]))


def test_moe_fitted_methods_reject_bad_input():
    model = moe("multinomial").fit(X, Y["multinomial"])
    raises_naming(lambda: model.predict(X[:, :1]), "X")
    raises_naming(lambda: model.predict_proba(_with(X, 0, np.nan)), "X")
    raises_naming(lambda: model.score(X, _with(Y["multinomial"], 0, 7, dtype=int)), "y")
    raises_naming(lambda: model.score(X, np.where(Y["multinomial"] == 1, "a", "b")), "y")
    raises_naming(lambda: model.sample(X, random_state="x"), "random_state")
    raises_naming(lambda: MixtureOfExperts(2).predict(X), "fit", softmix.NotFittedError)


def test_moe_given_init_of_the_wrong_shape():
    bad = MoEParams(gating=np.zeros((2, 4)), expert_coef=np.zeros((2, 4)),
                    expert_variance=np.ones(2))
    raises_naming(lambda: moe(init=bad).fit(X, Y["gaussian"]), "init")
    negative = MoEParams(gating=np.zeros((2, 3)), expert_coef=np.zeros((2, 3)),
                         expert_variance=np.array([1.0, -1.0]))
    raises_naming(lambda: moe(init=negative).fit(X, Y["gaussian"]), "expert_variance")
    nan = MoEParams(gating=np.array([[np.nan, 0, 0], [0, 0, 0]]), expert_coef=np.zeros((2, 3)),
                    expert_variance=np.ones(2))
    raises_naming(lambda: moe(init=nan).fit(X, Y["gaussian"]), "init")


# --------------------------------------------------------------------------- functions
FUNCTION_CASES = [
    # (id, call, argument named)
    ("make_smm n_samples<0", lambda: datasets.make_softmax_mixture(-1, 10, 2, 2), "n_samples"),
    ("make_smm n_samples float", lambda: datasets.make_softmax_mixture(2.5, 10, 2, 2),
     "n_samples"),
    ("make_smm p=1", lambda: datasets.make_softmax_mixture(10, 1, 2, 2), "n_alternatives"),
    ("make_smm L=0", lambda: datasets.make_softmax_mixture(10, 10, 0, 2), "n_features"),
    ("make_smm K=0", lambda: datasets.make_softmax_mixture(10, 10, 2, 0), "n_components"),
    ("make_smm separation nan",
     lambda: datasets.make_softmax_mixture(10, 10, 2, 2, separation=np.nan), "separation"),
    ("make_smm negative weights",
     lambda: datasets.make_softmax_mixture(10, 10, 2, 2, weights=[-0.5, 1.5]), "weights"),
    ("make_smm weights length",
     lambda: datasets.make_softmax_mixture(10, 10, 2, 2, weights=[1.0]), "weights"),
    ("make_smm random_state",
     lambda: datasets.make_softmax_mixture(10, 10, 2, 2, random_state="x"), "random_state"),
    ("make_moe n_samples<0", lambda: datasets.make_moe(-5), "n_samples"),
    ("make_moe expert", lambda: datasets.make_moe(10, expert="poisson"), "expert"),
    ("make_moe n_experts=0", lambda: datasets.make_moe(10, n_experts=0), "n_experts"),
    ("make_moe n_classes=1",
     lambda: datasets.make_moe(10, expert="multinomial", n_classes=1), "n_classes"),
    ("make_gaussian_moe n_samples", lambda: datasets.make_gaussian_moe(0.5), "n_samples"),
    ("make_gaussian_moe x_distribution",
     lambda: datasets.make_gaussian_moe(10, x_distribution="cauchy"), "x_distribution"),
    ("make_sym n_features=0", lambda: datasets.make_sym_mixture_of_experts(10, 0), "n_features"),
    ("make_sym kind", lambda: datasets.make_sym_mixture_of_experts(10, 2, kind="x"), "kind"),
    ("make_inverted_digits p_invert",
     lambda: datasets.make_inverted_digits(p_invert=1.5), "p_invert"),
    ("make_inverted_digits test_size",
     lambda: datasets.make_inverted_digits(test_size=0.0), "test_size"),
    ("atom_error shapes", lambda: metrics.atom_error(np.zeros((2, 2)), np.zeros((3, 2))),
     "estimated_atoms"),
    ("atom_error nan", lambda: metrics.atom_error(np.full((2, 2), np.nan), np.zeros((2, 2))),
     "estimated_atoms"),
    ("atom_error reduce", lambda: metrics.atom_error(np.zeros((2, 2)), np.zeros((2, 2)),
                                                     reduce="sum"), "reduce"),
    ("match_components complex",
     lambda: metrics.match_components(np.zeros((2, 2)) + 1j, np.zeros((2, 2))),
     "estimated_atoms"),
    ("weight_error negative",
     lambda: metrics.weight_error([-0.5, 1.5], np.zeros((2, 1)), [0.5, 0.5], np.ones((2, 1))),
     "est_weights"),
    ("weight_error length",
     lambda: metrics.weight_error([1.0], np.zeros((2, 1)), [0.5, 0.5], np.ones((2, 1))),
     "est_weights"),
    ("wasserstein1 negative",
     lambda: metrics.wasserstein1([0.5, 0.5], np.zeros((2, 1)), [-1.0, 2.0], np.ones((2, 1))),
     "weights_b"),
    ("wasserstein1 nan",
     lambda: metrics.wasserstein1([0.5, np.nan], np.zeros((2, 1)), [0.5, 0.5], np.ones((2, 1))),
     "weights_a"),
    ("subspace_error shapes",
     lambda: metrics.subspace_error(np.eye(3)[:, :1], np.eye(4)[:, :1]), "basis_hat"),
    ("voronoi_loss not a model", lambda: metrics.voronoi_loss("model", "truth", kind="d1"),
     "fitted"),
    ("SMM params negative weight",
     lambda: SoftmaxMixtureParams(np.array([-0.2, 1.2]), np.zeros((2, 2))), "weights"),
    ("SMM params nan atom",
     lambda: SoftmaxMixtureParams(np.array([0.5, 0.5]), np.full((2, 2), np.nan)), "atoms"),
    ("SMM params shapes",
     lambda: SoftmaxMixtureParams(np.array([0.5, 0.5]), np.zeros((3, 2))), "atoms"),
    ("log_likelihood counts length", lambda: log_likelihood(F, N[:-1], P2), "counts"),
    ("log_likelihood features columns", lambda: log_likelihood(F[:, :1], N, P2), "features"),
    ("log_likelihood nan features",
     lambda: log_likelihood(_with(F, 0, np.nan), N, P2), "features"),
    ("log_likelihood params type", lambda: log_likelihood(F, N, "params"), "params"),
    ("log_class_probabilities columns",
     lambda: log_class_probabilities(F[:, :1], P2.atoms), "features"),
    ("log_mixture_probabilities columns",
     lambda: log_mixture_probabilities(F[:, :1], P2), "features"),
    ("log_responsibilities columns", lambda: log_responsibilities(F[:, :1], P2), "features"),
    ("method_of_moments K=0", lambda: method_of_moments(F, N, 0), "n_components"),
    ("method_of_moments counts", lambda: method_of_moments(F, N[:-1], 2), "counts"),
    ("method_of_moments negative counts",
     lambda: method_of_moments(F, _with(N, 0, -1), 2), "counts"),
    ("method_of_moments nan features",
     lambda: method_of_moments(_with(F, 0, np.nan), N, 2), "features"),
]


@pytest.mark.parametrize(("call", "name"), [pytest.param(c, n, id=i) for i, c, n in FUNCTION_CASES])
def test_public_functions_name_the_bad_argument(call, name):
    raises_naming(call, name)


def test_load_idx_names_the_missing_file(tmp_path):
    missing = tmp_path / "train-labels-idx1-ubyte"
    raises_naming(lambda: datasets.load_idx(missing), "train-labels-idx1-ubyte", OSError)
    (tmp_path / "junk-idx1-ubyte").write_bytes(b"not an idx file")
    raises_naming(lambda: datasets.load_idx(tmp_path / "junk-idx1-ubyte"), "junk-idx1-ubyte")


# --------------------------------------------------------------------------- CLI
CLI_CASES = [
    (["demo", "--n-samples", "-5"], "--n-samples"),
    (["demo", "--n-samples", "many"], "--n-samples"),
    (["demo", "--n-samples", "2.5"], "--n-samples"),
    (["demo", "--n-components", "0"], "--n-components"),
    (["demo", "--n-alternatives", "1"], "--n-alternatives"),
    (["demo", "--n-features", "0"], "--n-features"),
    (["demo", "--n-alternatives", "5", "--n-components", "9"], "--n-components"),
    (["demo", "--seed", "-1"], "--seed"),
    (["demo", "--seed", "x"], "--seed"),
    (["reproduce", "no-such-experiment", "--quick"], "no-such-experiment"),
    (["reproduce", "smm-rates", "--seed", "1.5"], "--seed"),
    (["reproduce", "smm-rates", "--idx-dir", "/x"], "idx_dir"),
    (["nosuchcommand"], "nosuchcommand"),
]


@pytest.mark.parametrize(("argv", "name"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_names_the_bad_option(argv, name, capsys, tmp_path):
    try:
        code = cli_main([*argv, *(["--out", str(tmp_path)] if argv[0] != "nosuchcommand"
                                 and "--out" not in argv else [])])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert name.lstrip("-").replace("-", "[-_]") and re.search(
        re.escape(name).replace("\\-", "[-_]").lstrip("[-_]"), err), err
    assert "Traceback" not in err
