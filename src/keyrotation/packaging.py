"""Build the Lambda zip and the `dist/<prefix>/` tree that `aws s3 sync` uploads to the bucket.

The tree holds `CloudFormation/` (the templates), `Template/` (the email templates, at the keys
the notifier reads) and `Lambda/` (one zip for the three functions).
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import keyrotation
from keyrotation.errors import KeyRotationError
from keyrotation.notify.render import PACKAGE_TEMPLATES, template_s3_key

# The functions' runtime in deploy/main.yaml; compiled dependencies (pydantic-core) are
# fetched for exactly this platform.
LAMBDA_RUNTIME = "python3.13"
LAMBDA_PLATFORM = "manylinux2014_x86_64"
# The Lambda runtime provides these; shipping our own copy would only grow the zip.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore"})
# Run only on a workstation: the emulator needs moto, the CLI typer and rich.
LEFT_OUT = ("emulator", "cli.py", "__main__.py", "packaging.py")
DEPLOY_TEMPLATES = Path(__file__).resolve().parents[2] / "deploy"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackagingError(KeyRotationError):
    """The package could not be built; the message says which step failed."""


@dataclass(frozen=True)
class Package:
    root: Path
    prefix: str
    lambda_zip: Path
    lambda_key: str
    email_templates: tuple[Path, ...]
    cloudformation: tuple[Path, ...]


def lambda_s3_key(prefix: str, name: str) -> str:
    """Where the zip lives in the bucket: the main template's `Code.S3Key`."""
    return f"{prefix.strip('/')}/Lambda/{name}"


def runtime_requirements() -> list[str]:
    """keyrotation's own dependencies, less those the Lambda runtime provides."""
    wanted = []
    for text in metadata.requires("keyrotation") or []:
        name = re.match(r"[A-Za-z0-9._-]+", text)
        if ";" not in text and name and name.group().lower() not in PROVIDED_BY_RUNTIME:
            wanted.append(text.strip())
    return wanted


def build(
    out: Path,
    prefix: str,
    with_dependencies: bool = True,
    templates: Path = DEPLOY_TEMPLATES,
) -> Package:
    """Write `out/<prefix>/{CloudFormation,Template,Lambda}/`, replacing an earlier build."""
    prefix = prefix.strip("/")
    if not prefix:
        raise PackagingError("The S3 prefix must not be empty")
    sources = sorted(templates.glob("*.yaml"))
    if not sources:
        raise PackagingError(
            f"No CloudFormation templates in {templates}; run from a checkout of keyrotation "
            "or pass the deploy/ folder"
        )

    root = out / prefix
    if root.exists():
        shutil.rmtree(root)
    cloudformation = tuple(_copy(path, root / "CloudFormation" / path.name) for path in sources)
    email_templates = tuple(
        _copy(path, out / template_s3_key(prefix, path.name))
        for path in sorted(PACKAGE_TEMPLATES.glob("*.html"))
    )

    content = _lambda_zip(with_dependencies)
    name = f"keyrotation-{keyrotation_version()}-{hashlib.sha256(content).hexdigest()[:12]}.zip"
    key = lambda_s3_key(prefix, name)
    lambda_zip = out / key
    lambda_zip.parent.mkdir(parents=True, exist_ok=True)
    lambda_zip.write_bytes(content)
    return Package(root, prefix, lambda_zip, key, email_templates, cloudformation)


def keyrotation_version() -> str:
    return metadata.version("keyrotation")


def next_steps(package: Package, out: Path, bucket: str | None) -> list[str]:
    """The commands that deploy what was just built, in order."""
    bucket = bucket or "<S3BucketName>"
    templates = package.root / "CloudFormation"
    return [
        f"aws s3 sync {out} s3://{bucket}/",
        "aws ses verify-email-identity --email-address <AdminEmailAddress>",
        f"aws cloudformation deploy --stack-name keyrotation "
        f"--template-file {templates / 'main.yaml'} --capabilities CAPABILITY_NAMED_IAM "
        f"--parameter-overrides S3BucketName={bucket} S3BucketPrefix={package.prefix} "
        f"LambdaPackageName={package.lambda_zip.name} AdminEmailAddress=<AdminEmailAddress> "
        "AWSOrgID=<o-...> "
        "OrgManagementRoleArn=arn:aws:iam::<management account>:role/"
        "asa-iam-key-rotation-organization-reader",
        "# in the management account (StackSets do not deploy to it, so its member role too):",
        f"aws cloudformation deploy --stack-name keyrotation-organization-reader "
        f"--template-file {templates / 'management-role.yaml'} "
        "--capabilities CAPABILITY_NAMED_IAM "
        "--parameter-overrides PrimaryAccountID=<this account>",
        f"aws cloudformation deploy --stack-name keyrotation-member-role "
        f"--template-file {templates / 'member-role.yaml'} "
        "--capabilities CAPABILITY_NAMED_IAM "
        "--parameter-overrides PrimaryAccountID=<this account> AWSOrgID=<o-...>",
        "# to every account, from the management account or a StackSet administrator:",
        f"aws cloudformation create-stack-set --stack-set-name keyrotation-member-role "
        f"--template-body file://{templates / 'member-role.yaml'} "
        "--capabilities CAPABILITY_NAMED_IAM --permission-model SERVICE_MANAGED "
        "--auto-deployment Enabled=true,RetainStacksOnAccountRemoval=false "
        "--parameters ParameterKey=PrimaryAccountID,ParameterValue=<this account> "
        "ParameterKey=AWSOrgID,ParameterValue=<o-...>",
        "aws cloudformation create-stack-instances --stack-set-name keyrotation-member-role "
        "--deployment-targets OrganizationalUnitIds=<r-... or ou-...> --regions <one region>",
    ]


def _copy(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def _lambda_zip(with_dependencies: bool) -> bytes:
    """keyrotation's run-time modules, and its dependencies built for the Lambda platform."""
    files: dict[str, bytes] = {}
    package = Path(keyrotation.__file__).parent
    for path in _files(package):
        relative = path.relative_to(package)
        if relative.parts[0] not in LEFT_OUT:
            files[f"keyrotation/{relative.as_posix()}"] = path.read_bytes()
    if with_dependencies:
        with tempfile.TemporaryDirectory(prefix="keyrotation-deps-") as folder:
            _install_dependencies(Path(folder))
            for path in _files(Path(folder)):
                relative = path.relative_to(folder).as_posix()
                if not relative.startswith("bin/"):
                    files[relative] = path.read_bytes()
    return _zip(files)


def _install_dependencies(target: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target),
        "--platform", LAMBDA_PLATFORM,
        "--implementation", "cp",
        "--python-version", LAMBDA_RUNTIME.removeprefix("python"),
        "--only-binary=:all:",
        *runtime_requirements(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(
            f"pip could not fetch the dependencies for {LAMBDA_RUNTIME} on {LAMBDA_PLATFORM}: "
            f"{result.stderr.strip() or result.stdout.strip()}"
        )


def _files(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    )


def _zip(files: dict[str, bytes]) -> bytes:
    """A reproducible zip: sorted names, fixed times and modes, so equal code hashes equal."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, files[name])
    return buffer.getvalue()
