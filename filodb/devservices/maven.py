"""Resolve Maven artifacts (with their runtime dependencies) into a cached class path.

One directory per artifact set under the cache: a generated ``pom.xml`` and ``lib/`` filled by
``mvn dependency:copy-dependencies``; a ``.done`` marker makes later calls instant and offline.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>filodb.devservices</groupId>
  <artifactId>{name}</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
{deps}
  </dependencies>
</project>
"""

_DEP = """    <dependency>
      <groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>
{excl}    </dependency>"""


class MavenError(RuntimeError):
    """Maven could not resolve the artifacts (no network, unknown version, no mvn)."""


def classpath(
    name: str, coords: list[str], cache: Path, exclusions: list[str] | None = None
) -> list[Path]:
    """The jars of ``coords`` (``group:artifact:version``) and their runtime dependencies.

    ``exclusions`` (``group:artifact``) are left out of every coordinate's dependency tree.
    """
    key = hashlib.sha1(repr((coords, exclusions)).encode()).hexdigest()[:10]
    root = Path(cache).expanduser() / f"{name}-{key}"
    lib = root / "lib"
    if not (root / ".done").exists():
        if shutil.which("mvn") is None:
            raise MavenError("mvn is not on PATH (Debian package 'maven')")
        excl = ""
        if exclusions:
            excl = (
                "      <exclusions>\n"
                + "".join(
                    f"        <exclusion><groupId>{e.split(':')[0]}</groupId>"
                    f"<artifactId>{e.split(':')[1]}</artifactId></exclusion>\n"
                    for e in exclusions
                )
                + "      </exclusions>\n"
            )
        deps = "\n".join(
            _DEP.format(g=g, a=a, v=v, excl=excl) for g, a, v in (c.split(":") for c in coords)
        )
        root.mkdir(parents=True, exist_ok=True)
        (root / "pom.xml").write_text(_POM.format(name=name, deps=deps))
        if lib.exists():
            shutil.rmtree(lib)
        proc = subprocess.run(
            ["mvn", "-q", "-B", "-f", str(root / "pom.xml"),
             "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies",
             f"-DoutputDirectory={lib}", "-DincludeScope=runtime"],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise MavenError(
                f"mvn could not resolve {coords}:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}"
            )
        (root / ".done").write_text("\n".join(coords))
    jars = sorted(lib.glob("*.jar"))
    if not jars:
        raise MavenError(f"no jars under {lib}")
    return jars
