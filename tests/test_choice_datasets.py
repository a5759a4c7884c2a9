"""Choice simulators and the Swissmetro loader (on a small file in the Swissmetro format)."""

import numpy as np
import pytest

from softmix.choice.datasets import (
    find_swissmetro,
    load_swissmetro,
    make_latent_class_logit,
)
from softmix.datasets import make_latent_class_logit as reexported

HEADER = [
    "GROUP", "SURVEY", "SP", "ID", "PURPOSE", "FIRST", "TICKET", "WHO", "LUGGAGE", "AGE",
    "MALE", "INCOME", "GA", "ORIGIN", "DEST", "TRAIN_AV", "CAR_AV", "SM_AV", "TRAIN_TT",
    "TRAIN_CO", "TRAIN_HE", "SM_TT", "SM_CO", "SM_HE", "SM_SEATS", "CAR_TT", "CAR_CO",
    "CHOICE",
]


def _row(**kw):
    base = dict.fromkeys(HEADER, 0)
    base.update(GROUP=2, SP=1, PURPOSE=1, AGE=3, INCOME=2, TRAIN_AV=1, SM_AV=1, CAR_AV=1,
                TRAIN_TT=100, TRAIN_CO=50, SM_TT=60, SM_CO=40, CAR_TT=120, CAR_CO=70, CHOICE=2)
    base.update(kw)
    return [base[h] for h in HEADER]


def test_load_swissmetro_long_format_availability_and_filters(tmp_path):
    rows = [_row(ID=1), _row(ID=1, CAR_AV=0, CHOICE=1), _row(ID=2, GA=1, CHOICE=3),
            _row(ID=2, CHOICE=0), _row(ID=3, PURPOSE=2)]
    path = tmp_path / "swissmetro.dat"
    path.write_text("\t".join(HEADER) + "\n"
                    + "\n".join("\t".join(map(str, r)) for r in rows) + "\n")
    d = load_swissmetro(path)
    # choice 0 and purpose 2 dropped; the second choice has no car: 3 + 2 + 3 rows
    assert d["X"].shape == (8, 4)
    assert list(d["situation"]) == [0, 0, 0, 1, 1, 2, 2, 2]
    assert list(d["alternative"]) == [0, 1, 2, 0, 1, 0, 1, 2]
    assert list(d["chosen"]) == [0, 1, 0, 1, 0, 0, 0, 1]
    assert list(d["id"]) == [1, 1, 1, 1, 1, 2, 2, 2]
    # constants, time / 100, cost / 100 and 0 for GA holders on train and Swissmetro
    assert np.allclose(d["X"][0], [1, 0, 1.0, 0.5]) and np.allclose(d["X"][2], [0, 1, 1.2, 0.7])
    assert np.allclose(d["X"][5:, 3], [0.0, 0.0, 0.7]) and np.all(d["ga"][5:] == 1)
    assert len(load_swissmetro(path, purposes=None)["situation"]) == 11


def test_find_swissmetro_errors_name_the_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("SOFTMIX_SWISSMETRO", str(tmp_path / "missing.dat"))
    with pytest.raises(FileNotFoundError, match="SOFTMIX_SWISSMETRO"):
        find_swissmetro()
    bad = tmp_path / "bad.dat"
    bad.write_text("A\tB\n1\t2\n")
    with pytest.raises(ValueError, match="missing columns"):
        load_swissmetro(bad)


def test_make_latent_class_logit_returns_valid_data_and_the_truth():
    assert reexported is make_latent_class_logit
    d = make_latent_class_logit(50, 4, 5, 3, 3, n_covariates=2, availability=0.5,
                                random_state=0)
    n_sit = 50 * 4
    assert np.all(np.bincount(d.situations, weights=d.chosen, minlength=n_sit) == 1)
    sizes = np.bincount(d.situations, minlength=n_sit)
    assert sizes.min() >= 2 and sizes.max() <= 5 and sizes.min() < 5  # sets vary
    assert d.coef.shape == (3, 3) and d.membership_coef.shape == (3, 3)
    assert np.all(d.membership_coef[-1] == 0) and d.classes.shape == (50,)
    # covariates constant within a person, groups constant within a situation
    for g in range(50):
        assert np.unique(d.covariates[d.groups == g], axis=0).shape[0] == 1
    assert np.allclose(np.linalg.norm(d.coef, axis=1), 2.0)
    again = make_latent_class_logit(50, 4, 5, 3, 3, n_covariates=2, availability=0.5,
                                    random_state=0)
    assert np.array_equal(again.X, d.X) and np.array_equal(again.chosen, d.chosen)
    with pytest.raises(ValueError, match="availability"):
        make_latent_class_logit(10, availability=0.0)
