"""The import-linter contracts, generated from `app.features.FEATURES`.

`python -m tools.contracts` writes `.importlinter`; `--check` fails when the committed file
differs from what the feature list says (run by `make lint`, and by a test). Nobody edits the
contracts by hand, so the feature list cannot drift from the protection it is meant to have.
"""

import argparse
import sys
from pathlib import Path

from app.features import FEATURES, MODULE_LAYERS, Feature, check, depth

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS_FILE = ROOT / ".importlinter"

# Modules below the router must not speak HTTP: they are called from routers, start-up code,
# scripts and workers alike, and an HTTPException raised there bypasses our error types.
BELOW_THE_ROUTER = ("service", "crud", "schemas", "models", "errors")
HTTP_PACKAGES = ("fastapi", "starlette")
# The parts of core those modules build on, held to the same rule.
CORE_BELOW_THE_ROUTER = ["app.core.config", "app.core.db", "app.core.security"]


# Contract names: what `lint-imports` prints, KEPT or BROKEN (short enough not to wrap).
LAYERS = "app: entry points > feature list > features > core, nothing unlisted"
INDEPENDENT = "features are independent, except their declared arrows to public modules"
FEATURE_LAYERS = "inside a feature, modules import only the layers below them"
NO_HTTP = "no HTTP types below the router"


def _lines(key: str, values: list[str]) -> str:
    return f"{key} =\n" + "".join(f"    {value}\n" for value in values)


def _contract(ident: str, name: str, why: str, body: str, *, kind: str, extra: str = "") -> str:
    return (
        f"[importlinter:contract:{ident}]\n"
        f"name = {name}\n"
        f"type = {kind}\n"
        f"{body}{extra}"
        f"broken_contract_guidance =\n    {why}\n"
    )


def render(features: tuple[Feature, ...] = FEATURES) -> str:
    check(features)
    names = [feature.name for feature in features]
    by_depth: dict[int, list[str]] = {}
    for feature in features:
        by_depth.setdefault(depth(feature.name, features), []).append(feature.name)
    feature_layers = [" | ".join(by_depth[d]) for d in sorted(by_depth, reverse=True)]

    arrows = [
        f"app.{feature.name}.** -> app.{used}.{module}"
        for feature in features
        for used in feature.uses
        for module in next(f for f in features if f.name == used).public
    ]
    sections = [
        "# Generated from app/features.py by `make contracts`: edit FEATURES, not this file.\n"
        "# `make lint` runs them; each contract's guidance says why it exists.\n"
        "[importlinter]\n"
        "root_package = app\n"
        "include_external_packages = True\n",
        _contract(
            "layers",
            LAYERS,
            "core is shared by every feature, so it imports none. Exhaustive: a package under "
            "app/ that is not in FEATURES (never mounted, never migrated, never checked) breaks "
            "this contract. Add it to FEATURES and run `make contracts`.",
            "containers =\n    app\n"
            + _lines(
                "layers",
                [
                    "__main__",
                    "cli",
                    "main | migrations | serve",
                    "features",
                    *feature_layers,
                    "core",
                ],
            )
            + "exhaustive = True\n",
            kind="layers",
        ),
        _contract(
            "features-independent",
            INDEPENDENT,
            "A feature may import another only where FEATURES says it `uses` it, and then only "
            "the modules that feature declares `public`. Everything else (its crud, its "
            "models' internals, its router) is its team's to change without asking.",
            _lines("modules", [f"app.{name}" for name in names])
            + (_lines("ignore_imports", arrows) if arrows else "")
            # A declared arrow that is not (yet) used is not an error.
            + "unmatched_ignore_imports_alerting = none\n",
            kind="independence",
        ),
        _contract(
            "feature-layers",
            FEATURE_LAYERS,
            "HTTP at the top, tables at the bottom: "
            + " -> ".join(MODULE_LAYERS)
            + ". A module imports only those below it (so crud never imports a router, schemas "
            "never import crud).",
            _lines("containers", [f"app.{name}" for name in names])
            # Optional: a feature has only the modules it needs.
            + _lines("layers", [f"({module})" for module in MODULE_LAYERS]),
            kind="layers",
        ),
        _contract(
            "no-http-below-router",
            NO_HTTP,
            "service, crud, schemas, models and errors are called from routers, start-up code "
            "and scripts alike: they raise the feature's domain errors (rendered as problem+json "
            "at the edge), never FastAPI's HTTPException, and take no Request.",
            _lines(
                "source_modules",
                [f"app.*.{module}" for module in BELOW_THE_ROUTER] + CORE_BELOW_THE_ROUTER,
            )
            + _lines("forbidden_modules", list(HTTP_PACKAGES))
            # Direct imports only: every feature error subclasses core's AppError, whose module
            # also holds the HTTP handlers.
            + "allow_indirect_imports = True\n",
            kind="forbidden",
        ),
    ]
    return "\n".join(sections)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    wanted = render()
    current = CONTRACTS_FILE.read_text() if CONTRACTS_FILE.exists() else ""
    if args.check:
        if current != wanted:
            print(
                f"{CONTRACTS_FILE.name} is out of date with app/features.py: run `make contracts`"
            )
            return 1
        return 0
    if current != wanted:
        CONTRACTS_FILE.write_text(wanted)
        print(f"wrote {CONTRACTS_FILE.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
