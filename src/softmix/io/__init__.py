"""Files in and out: model persistence (:mod:`softmix.io.persistence`: one zip of a JSON
manifest and ``.npy`` arrays, no pickle), readers of user data (:mod:`softmix.io.readers`:
CSV, Parquet, NPY, NPZ -> arrays, with errors naming the file and the column) and writers of
prediction tables (:mod:`softmix.io.writers`). :mod:`softmix.io.workflow` holds the
fit / summary / predict steps behind the ``softmix`` command."""

from softmix.io.persistence import ModelFileError, load, read_manifest, save

__all__ = ["ModelFileError", "load", "read_manifest", "save"]
