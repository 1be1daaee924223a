from __future__ import annotations

from inspect import ismodule

import noted
import noted.db
import noted.errors


def test_all_is_sorted_and_complete() -> None:
    assert noted.__all__ == sorted(noted.__all__)
    for name in noted.__all__:
        assert hasattr(noted, name), name
    # every public name that is not a submodule (noted.db, noted.cli, ...) is exported
    public = {n for n, v in vars(noted).items() if not n.startswith("_") and not ismodule(v)}
    assert public <= set(noted.__all__), public - set(noted.__all__)


def test_every_error_derives_from_noted_error() -> None:
    for name in noted.errors.__all__:
        assert issubclass(getattr(noted.errors, name), noted.errors.NotedError)
    assert issubclass(noted.UserError, ValueError)
    assert issubclass(noted.NotFoundError, LookupError)


def test_backends_satisfy_the_store_protocol(tmp_path) -> None:
    assert isinstance(noted.InMemoryDb(), noted.MemoryStore)
    assert isinstance(noted.SqliteDb(tmp_path / "x.db"), noted.MemoryStore)


def test_subpackage_exports_are_sorted_and_importable() -> None:
    import noted.agent
    import noted.audit
    import noted.models
    import noted.testing

    modules = (noted.agent, noted.audit, noted.models, noted.testing, noted.db, noted.errors)
    for module in modules:
        assert module.__all__ == sorted(module.__all__), module.__name__
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)


def test_importing_noted_loads_no_vendor_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys, noted, noted.models; "
        "print([m for m in ('openai', 'anthropic', 'google.genai', 'llama_cpp') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
