"""`keyrotation package`: the dist/<prefix>/ layout, and a Lambda zip with only run-time code.

Building with dependencies fetches wheels from PyPI; those tests run only when
KEYROTATION_PACKAGE_ONLINE=1. The rest builds without dependencies and needs no network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keyrotation import packaging
from keyrotation.cli import app
from keyrotation.notify.render import template_s3_key

PREFIX = "asa/asa-iam-rotation"
NOT_AT_RUN_TIME = ("moto", "typer", "rich", "click", "time_machine", "boto3", "botocore")


def names_in(archive: Path) -> list[str]:
    with zipfile.ZipFile(archive) as opened:
        return opened.namelist()


def test_layout_is_ready_for_s3_sync_at_the_keys_the_stack_reads(tmp_path):
    built = packaging.build(tmp_path, PREFIX, with_dependencies=False)

    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == sorted(
        [
            f"{PREFIX}/CloudFormation/main.yaml",
            f"{PREFIX}/CloudFormation/management-role.yaml",
            f"{PREFIX}/CloudFormation/member-role.yaml",
            f"{PREFIX}/CloudFormation/vpc-endpoints.yaml",
            template_s3_key(PREFIX, "audit.html"),
            template_s3_key(PREFIX, "enforce.html"),
            built.lambda_key,
        ]
    )
    assert built.lambda_key == packaging.lambda_s3_key(PREFIX, built.lambda_zip.name)
    assert template_s3_key(PREFIX, "audit.html") == f"{PREFIX}/Template/audit.html"


def test_a_prefix_with_slashes_around_it_lands_at_the_same_keys(tmp_path):
    built = packaging.build(tmp_path, f"/{PREFIX}/", with_dependencies=False)

    assert built.root == tmp_path / PREFIX
    assert (tmp_path / template_s3_key(PREFIX, "enforce.html")).is_file()


def test_zip_holds_the_handlers_and_nothing_that_only_a_workstation_needs(tmp_path):
    built = packaging.build(tmp_path, PREFIX, with_dependencies=False)
    names = names_in(built.lambda_zip)

    assert "keyrotation/handlers/lambda_handlers.py" in names
    assert "keyrotation/notify/templates/enforce.html" in names
    assert not [n for n in names if n.startswith("keyrotation/emulator/")]
    for left_out in ("cli.py", "__main__.py", "packaging.py"):
        assert f"keyrotation/{left_out}" not in names
    assert not [n for n in names if n.split("/")[0] in NOT_AT_RUN_TIME]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_handlers_import_from_the_zip_without_workstation_packages(tmp_path):
    built = packaging.build(tmp_path, PREFIX, with_dependencies=False)
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(built.lambda_zip) as opened:
        opened.extractall(unpacked)
    # The venv still provides pydantic and jinja2 here; moto, typer and rich are blocked.
    probe = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {("moto", "typer", "rich", "click")!r}:
            raise ImportError(f"{{name}} is not in the Lambda runtime")
sys.meta_path.insert(0, Block())
sys.path.insert(0, {str(unpacked)!r})
import keyrotation.handlers.lambda_handlers as handlers
assert handlers.__file__.startswith({str(unpacked)!r}), handlers.__file__
print(sorted(name for name in sys.modules if name.startswith("keyrotation")))
"""

    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "keyrotation.pipeline" in result.stdout


def test_the_same_code_gives_the_same_zip_name(tmp_path):
    first = packaging.build(tmp_path / "a", PREFIX, with_dependencies=False)
    second = packaging.build(tmp_path / "b", PREFIX, with_dependencies=False)

    assert first.lambda_zip.name == second.lambda_zip.name
    assert first.lambda_zip.read_bytes() == second.lambda_zip.read_bytes()


def test_runtime_requirements_leave_out_what_lambda_provides_and_the_extras():
    wanted = packaging.runtime_requirements()
    names = {w.split(">")[0].split("=")[0].split("<")[0].lower() for w in wanted}

    assert names == {"pydantic", "jinja2"}


def test_package_command_prints_the_next_commands(tmp_path):
    result = CliRunner().invoke(
        app,
        ["package", "--out", str(tmp_path), "--no-dependencies", "--bucket", "my-deploy-bucket"],
    )

    assert result.exit_code == 0, result.output
    (zip_file,) = (tmp_path / PREFIX / "Lambda").glob("*.zip")
    assert f"aws s3 sync {tmp_path} s3://my-deploy-bucket/" in result.output
    assert f"LambdaPackageName={zip_file.name}" in result.output
    assert "member-role.yaml" in result.output and "management-role.yaml" in result.output


@pytest.mark.skipif(
    os.environ.get("KEYROTATION_PACKAGE_ONLINE") != "1",
    reason="fetches wheels from PyPI; set KEYROTATION_PACKAGE_ONLINE=1",
)
def test_dependencies_are_built_for_the_lambda_runtime(tmp_path):
    built = packaging.build(tmp_path, PREFIX)
    names = names_in(built.lambda_zip)
    tag = packaging.LAMBDA_RUNTIME.removeprefix("python").replace(".", "")

    assert {n.split("/")[0] for n in names} >= {"pydantic", "pydantic_core", "jinja2", "markupsafe"}
    assert any(n.startswith("pydantic_core/") and f"cpython-{tag}-x86_64" in n for n in names)
    assert not [n for n in names if n.split("/")[0] in NOT_AT_RUN_TIME]
