"""Where the local broker's shipped files are: package data in `assets/` next to this
module, never found through the repository.

pom.xml lists the jars Maven fetches (jars.py), server.properties.template is each node's
config (config.py), sasl-ssl.properties.template is added to it for a SASL_SSL listener
(security.py), log4j2.properties is how the JVM logs (node.py).

Not named `assets.py`: setuptools leaves a module out of the wheel when a data folder of
the same name sits beside it.
"""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
POM_FILE = ASSETS_DIR / "pom.xml"
PROPERTIES_TEMPLATE = ASSETS_DIR / "server.properties.template"
SASL_SSL_TEMPLATE = ASSETS_DIR / "sasl-ssl.properties.template"
LOG4J2_FILE = ASSETS_DIR / "log4j2.properties"
