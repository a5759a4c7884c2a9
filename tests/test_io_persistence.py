"""model.save / softmix.load: exact round trips for every estimator, the file format, and the
errors on bad files (truncated, corrupted, unknown version, another estimator, missing arrays)."""

import io
import json
import warnings
import zipfile

import numpy as np
import pytest

import softmix
from softmix import MixtureOfExperts, SoftmaxMixture, SoftmixWarning, load
from softmix.datasets import make_moe, make_softmax_mixture
from softmix.io.persistence import (
    FORMAT_VERSION,
    ModelFileError,
    read_manifest,
    register_estimator,
    save,
)
from softmix.softmax_mixture.model import SoftmaxMixtureParams


@pytest.fixture(scope="module")
def smm_data():
    return make_softmax_mixture(4000, 60, 3, 2, return_choices=True, random_state=0)


@pytest.fixture(scope="module")
def smm_model(smm_data):
    return SoftmaxMixture(2, n_init=2, random_state=1).fit(smm_data.features, smm_data.choices)


def _rewrite(src, dst, *, manifest=None, drop=(), replace=None):
    """Copy the zip ``src`` to ``dst`` with a changed manifest / dropped / replaced entries."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in drop:
                continue
            data = zin.read(name)
            if name == "manifest.json" and manifest is not None:
                data = json.dumps(manifest(json.loads(data))).encode()
            if replace and name in replace:
                data = replace[name]
            zout.writestr(name, data)
    return dst


def test_softmax_mixture_round_trip_is_exact(tmp_path, smm_data, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    back = load(path, expected=SoftmaxMixture)
    assert type(back) is SoftmaxMixture
    assert back.get_params() == smm_model.get_params()
    alts = np.arange(smm_data.features.shape[0])
    # bit for bit, not allclose
    assert np.array_equal(back.predict_proba(alts), smm_model.predict_proba(alts))
    assert np.array_equal(back.predict(alts), smm_model.predict(alts))
    assert np.array_equal(back.choice_probabilities(), smm_model.choice_probabilities())
    assert (back.score(smm_data.features, smm_data.choices)
            == smm_model.score(smm_data.features, smm_data.choices))
    assert back.bic() == smm_model.bic() and back.aic() == smm_model.aic()
    assert np.array_equal(back.sample(50, random_state=3), smm_model.sample(50, random_state=3))
    for name in ("weights_", "atoms_", "history_", "features_"):
        assert np.array_equal(getattr(back, name), getattr(smm_model, name)), name
    for name in ("log_likelihood_", "n_iter_", "converged_", "stop_reason_", "init_method_",
                 "m_step_used_", "n_samples_", "n_unidentified_", "n_features_in_"):
        assert getattr(back, name) == getattr(smm_model, name), name
    fr, fr0 = back.fit_result_, smm_model.fit_result_
    assert fr.params is back.params_  # shared objects stay shared
    assert np.array_equal(fr.all_objectives, fr0.all_objectives)
    assert fr.extra == fr0.extra and fr.criterion == fr0.criterion
    assert np.isnan(fr.criterion_value) == np.isnan(fr0.criterion_value)
    assert not back.params_.weights.flags.writeable  # frozen like the original
    # a loaded model can be refit
    back.fit(smm_data.features, smm_data.choices)


def test_softmax_mixture_float32_and_given_init(tmp_path, smm_data):
    start = SoftmaxMixtureParams(np.array([0.3, 0.7]), np.array([[1.0, 0.0, 0.0],
                                                                 [0.0, 1.0, 0.0]]))
    model = SoftmaxMixture(2, init=start, dtype=np.float32, max_iter=5, tol=0,
                           random_state=0).fit(smm_data.features, smm_data.choices)
    back = load(model.save(tmp_path / "f32.softmix"))
    assert back.dtype == "float32"
    assert np.array_equal(back.init.atoms, start.atoms)
    assert np.array_equal(back.init.weights, start.weights)
    assert np.array_equal(back.atoms_, model.atoms_)


EXPERT_CASES = ["gaussian", "logistic", "multinomial", "multinomial-text"]


@pytest.mark.parametrize("case", EXPERT_CASES)
def test_mixture_of_experts_round_trip_is_exact(tmp_path, case):
    expert = case.split("-")[0]
    X, y, _ = make_moe(400, 2, 2, expert=expert, n_classes=3, random_state=0)
    if case == "multinomial-text":
        y = np.array(["apple", "kiwi", "pear"])[y.astype(int)]
    elif expert != "gaussian":
        y = y.astype(np.int64)
    model = MixtureOfExperts(2, expert=expert, random_state=0, max_iter=30, tol=0,
                             inner_max_iter=50).fit(X, y)
    back = load(model.save(tmp_path / "moe.softmix"), expected=MixtureOfExperts)
    assert back.get_params() == model.get_params()
    assert np.array_equal(back.predict(X), model.predict(X))
    assert np.array_equal(back.gate_proba(X), model.gate_proba(X))
    assert np.array_equal(back.posterior(X, y), model.posterior(X, y))
    assert np.array_equal(back.score_samples(X, y), model.score_samples(X, y))
    if expert != "gaussian":
        assert np.array_equal(back.predict_proba(X), model.predict_proba(X))
        assert back.classes_.dtype == model.classes_.dtype
        assert np.array_equal(back.classes_, model.classes_)
    else:
        assert not hasattr(back, "predict_proba")
    assert back.fit_result_.extra.keys() == model.fit_result_.extra.keys()
    assert np.array_equal(back.sample(X, random_state=1)[0], model.sample(X, random_state=1)[0])


def test_unfitted_model_round_trip(tmp_path):
    path = MixtureOfExperts(3, expert="logistic", solver="gd", step_size=0.05).save(
        tmp_path / "u.softmix")
    back = load(path)
    assert back.get_params()["step_size"] == 0.05 and back.solver == "gd"
    assert not hasattr(back, "params_")
    assert read_manifest(path)["fitted"] is False


def test_callback_and_generator_are_not_saved_with_a_warning(tmp_path, smm_data):
    model = SoftmaxMixture(2, max_iter=3, tol=0, random_state=np.random.default_rng(0),
                           callback=lambda *a: None)
    model.fit(smm_data.features, smm_data.choices)
    with pytest.warns(SoftmixWarning, match=r"\['random_state', 'callback'\]"):
        path = model.save(tmp_path / "cb.softmix")
    back = load(path)
    assert back.callback is None and back.random_state is None
    assert read_manifest(path)["not_saved"] == ["random_state", "callback"]
    assert np.array_equal(back.atoms_, model.atoms_)


def test_file_format_is_json_and_npy_only(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix", metadata={"source": "test", "n": 3})
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert names[0] == "manifest.json"
        assert all(n.startswith("arrays/") and n.endswith(".npy") for n in names[1:])
        manifest = json.loads(z.read("manifest.json"))  # plain JSON (no NaN tokens)
        # every array loads without softmix and without pickle
        atoms = np.load(z.open(manifest["state"]["atoms_"]["$array"]), allow_pickle=False)
        for name in names[1:]:
            np.load(io.BytesIO(z.read(name)), allow_pickle=False)
    assert np.array_equal(atoms, smm_model.atoms_)
    assert manifest["format"] == "softmix-model"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["softmix_version"] == softmix.__version__
    assert manifest["estimator"] == {"class": "SoftmaxMixture",
                                     "module": "softmix.softmax_mixture.estimator"}
    assert manifest["hyperparameters"]["n_init"] == 2
    assert manifest["metadata"] == {"source": "test", "n": 3}
    diag = manifest["diagnostics"]
    assert diag["log_likelihood"] == smm_model.log_likelihood_
    assert diag["n_iter"] == smm_model.n_iter_ and diag["converged"] is smm_model.converged_
    assert diag["stop_reason"] == smm_model.stop_reason_
    assert diag["history"] == smm_model.history_.tolist()
    assert diag["criterion"] == smm_model.fit_result_.criterion
    assert "criterion_value" in diag
    assert b"pickle" not in path.read_bytes().lower()


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.softmix: no such model file"):
        load(tmp_path / "nothere.softmix")


def test_truncated_file_names_the_file(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    cut = tmp_path / "cut.softmix"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelFileError, match=r"cut\.softmix: .*truncated or corrupted"):
        load(cut)


def test_not_a_zip_and_zip_without_manifest(tmp_path):
    text = tmp_path / "notes.softmix"
    text.write_text("hello")
    with pytest.raises(ModelFileError, match="notes.softmix: not a softmix model file"):
        load(text)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("x.txt", "x")
    with pytest.raises(ModelFileError, match="other.zip: not a softmix model file .*manifest"):
        load(other)


def test_corrupted_array_bytes(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    raw = bytearray(path.read_bytes())
    # flip bytes inside the stored atoms_ array (entries are not compressed)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("arrays/atoms_.npy")
    at = info.header_offset + 30 + len(info.filename) + 140
    raw[at: at + 8] = b"\xff" * 8
    bad = tmp_path / "bad.softmix"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match=r"bad\.softmix: array 'arrays/atoms_\.npy'"):
        load(bad)
    # a consistent zip whose array no longer matches the manifest's checksum
    tampered = _rewrite(path, tmp_path / "t.softmix", replace={
        "arrays/atoms_.npy": _npy(np.zeros_like(smm_model.atoms_))})
    with pytest.raises(ModelFileError, match="does not match its checksum"):
        load(tampered)


def _npy(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def test_unknown_format_version(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    newer = _rewrite(path, tmp_path / "v99.softmix",
                     manifest=lambda m: {**m, "format_version": 99})
    with pytest.raises(ModelFileError, match=r"v99\.softmix: format version 99 .*newer softmix"
                                             r".*reads versions up to 1.*Upgrade"):
        load(newer)
    broken = _rewrite(path, tmp_path / "vx.softmix",
                      manifest=lambda m: {**m, "format_version": "one"})
    with pytest.raises(ModelFileError, match="invalid format_version 'one'"):
        load(broken)
    alien = _rewrite(path, tmp_path / "alien.softmix", manifest=lambda m: {**m, "format": "x"})
    with pytest.raises(ModelFileError, match="not a softmix model file"):
        load(alien)


def test_file_of_another_estimator(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "smm.softmix")
    with pytest.raises(ModelFileError, match=r"smm\.softmix holds a SoftmaxMixture, not a "
                                             "MixtureOfExperts"):
        load(path, expected=MixtureOfExperts)
    assert isinstance(load(path, expected=(MixtureOfExperts, SoftmaxMixture)), SoftmaxMixture)


def test_missing_array(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    gone = _rewrite(path, tmp_path / "gone.softmix", drop={"arrays/atoms_.npy"})
    with pytest.raises(ModelFileError, match=r"gone\.softmix: array 'arrays/atoms_\.npy' "
                                             "listed in the manifest is missing"):
        load(gone)


def test_invalid_parameters_in_the_file_are_caught(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")
    bad = _rewrite(path, tmp_path / "w.softmix", manifest=lambda m: m, replace=None)
    # weights that do not sum to one: the validating constructor rejects them
    with zipfile.ZipFile(path) as z:
        manifest = json.loads(z.read("manifest.json"))
    name = manifest["state"]["fit_result_"]["fields"]["params"]["fields"]["weights"]["$array"]
    payload = _npy(np.array([0.9, 0.9]))
    import hashlib

    def fix(m):
        m["arrays"][name]["sha256"] = hashlib.sha256(payload).hexdigest()
        return m

    bad = _rewrite(path, tmp_path / "w.softmix", manifest=fix, replace={name: payload})
    with pytest.raises(ModelFileError, match=r"w\.softmix: the SoftmaxMixtureParams at "
                                             r".*invalid .*weights must sum to 1"):
        load(bad)


def test_classes_outside_softmix_need_registration(tmp_path):
    with pytest.raises(ModelFileError, match="outside softmix; register it"):
        load(_Custom(2).fit().save(tmp_path / "c.softmix"))
    register_estimator(_Custom)
    back = load(tmp_path / "c.softmix")
    assert back.k == 2 and back.table_ == {"a": [1, 2]}
    assert back.restored  # its own _restore_state ran


class _Custom:
    """An estimator outside softmix with its own _persist_state/_restore_state."""

    def __init__(self, k=1):
        self.k = k
        self.restored = False

    def get_params(self, deep=True):
        return {"k": self.k}

    def fit(self):
        self.table_ = {"a": [1, 2]}
        return self

    def save(self, path):
        return save(self, path)

    def _persist_state(self):
        return {"table_": self.table_}

    def _restore_state(self, state):
        self.table_ = state["table_"]
        self.restored = True


def test_unsaveable_fitted_attribute_is_a_type_error(tmp_path):
    model = _Plain()
    model.thing_ = object()
    with pytest.raises(TypeError, match="cannot save the fitted attribute thing_"):
        save(model, tmp_path / "x.softmix")
    assert not (tmp_path / "x.softmix").exists()


class _Plain:
    def get_params(self, deep=True):
        return {}


def test_save_replaces_atomically_and_leaves_no_temporary(tmp_path, smm_model):
    path = tmp_path / "m.softmix"
    path.write_text("old")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        smm_model.save(path)
    assert load(path).n_iter_ == smm_model.n_iter_
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.softmix"]


def test_moe_params_hyperparameters_round_trip(tmp_path):
    X, y, truth = make_moe(200, 1, 2, random_state=0)
    model = MixtureOfExperts(2, init="near_truth", truth=truth, max_iter=3, tol=0,
                             random_state=0).fit(X, y)
    back = load(model.save(tmp_path / "t.softmix"))
    for field in ("gating", "expert_coef", "expert_variance"):
        assert np.array_equal(getattr(back.truth, field), getattr(truth, field))
    assert back.truth.expert == "gaussian"
    assert np.array_equal(back.predict(X), model.predict(X))


def test_malformed_state_is_a_model_file_error(tmp_path, smm_model):
    path = smm_model.save(tmp_path / "m.softmix")

    def mangle(m):
        m["state"]["n_iter_"] = {"$dict": 5}
        return m

    bad = _rewrite(path, tmp_path / "mangled.softmix", manifest=mangle)
    with pytest.raises(ModelFileError, match=r"mangled\.softmix: its fitted state cannot be "
                                             "decoded"):
        load(bad)
    # a hyperparameter this softmix does not know (e.g. from a newer version)
    extra = _rewrite(path, tmp_path / "extra.softmix", manifest=lambda m: {
        **m, "hyperparameters": {**m["hyperparameters"], "warp_speed": 9}})
    with pytest.raises(ModelFileError, match="its hyperparameters do not fit SoftmaxMixture"):
        load(extra)
