"""A real DICOM server for the tests: Orthanc with its DICOMweb plugin (Debian ``orthanc``, ``orthanc-dicomweb``),
started on free loopback ports with its storage in a temporary folder, and stopped after.

``.ci/setup-orthanc`` installs it. Without it the tests that need it skip, except when ``BUNDLE_REQUIRE_ORTHANC=1``
(CI), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ORTHANC = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").is_file() else None)
PLUGINS = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so", "/usr/lib/orthanc/libOrthancDicomWeb.so")
PLUGIN = next((p for p in PLUGINS if Path(p).is_file()), None)
AVAILABLE = ORTHANC is not None and PLUGIN is not None
REQUIRED = os.environ.get("BUNDLE_REQUIRE_ORTHANC") == "1"
SKIP_REASON = "Orthanc with its DICOMweb plugin is not installed (.ci/setup-orthanc)"
START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def orthanc_server(root: Path) -> Iterator[str]:
    """
    Run Orthanc for the duration of the ``with`` block; yields its DICOMweb base address.

    Args:
        root: an empty temporary folder for the configuration, the storage and the log.

    Raises:
        RuntimeError: when Orthanc is not installed or does not answer within ``START_TIMEOUT_S``.
    """
    if not AVAILABLE:
        raise RuntimeError(SKIP_REASON)
    http_port, dicom_port = _free_port(), _free_port()
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    config = {
        "Name": "bundle-tests",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [PLUGIN],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (root / "orthanc.json").write_text(json.dumps(config))
    log = open(root / "orthanc.log", "wb")
    proc = subprocess.Popen([ORTHANC, str(root / "orthanc.json")], cwd=str(root), stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http_port}"
    try:
        deadline = time.time() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/dicom-web/studies", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if proc.poll() is not None or time.time() > deadline:
                tail = (root / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc did not start on port {http_port}:\n{tail}")
            time.sleep(0.2)
        yield f"{base}/dicom-web"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def instance_count(url: str) -> int:
    """Instances the server holds (Orthanc's REST statistics), from its DICOMweb base address."""
    with urllib.request.urlopen(url.rsplit("/dicom-web", 1)[0] + "/statistics", timeout=10) as response:
        return int(json.loads(response.read())["CountInstances"])
