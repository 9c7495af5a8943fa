"""Provenance inside the mp4: a C2PA manifest (c2pa-python, the Content Authenticity
Initiative's library), signed with this deployment's key, and its verification.

The manifest says the clip was made by a trained algorithm (IPTC digital source type
``trainedAlgorithmicMedia``, action ``c2pa.created``) and carries the assertion
``org.steerfeed.generation``: the model, the time, the request (job) id, the clip id and the
SHA-256 of the encoded video stream. C2PA binds the manifest to the file with its own hash of
the file's boxes (``c2pa.hash.bmff``); :func:`verify_file` checks that, the signature, and the
stream hash again, so changing one byte of the video or of the manifest makes it fail. No user
id goes into the file: a copy of a file cannot be erased later.

Signing credentials live in the provenance folder (default ``DATA_DIR/provenance``): on first
use a local certificate authority and a signing certificate (ES256) are made there and the
authority's key is thrown away. ``trust-anchor.pem`` is what a verifier trusts; an operator can
replace ``signer-chain.pem`` and ``signer.key`` with a certificate from a CA on the C2PA trust
list, and then any C2PA reader shows the clips as trusted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import av

from pipelines.generation.errors import GenerationError

logger = logging.getLogger(__name__)

ASSERTION = "org.steerfeed.generation"
DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
KEY_FILE = "signer.key"
CHAIN_FILE = "signer-chain.pem"
ANCHOR_FILE = "trust-anchor.pem"
# Failure codes that say the signer is not on the verifier's trust list: the file is intact.
UNTRUSTED_CODES = frozenset({"signingCredential.untrusted"})
_make_lock = threading.Lock()


class ProvenanceError(GenerationError):
    """Signing failed, or the signing credentials cannot be read or made."""


def video_stream_sha256(path: Path) -> str:
    """SHA-256 of the encoded packets of the file's first video stream, in order."""
    h = hashlib.sha256()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.size:
                h.update(bytes(packet))
    return h.hexdigest()


def _make_credentials(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, "steerfeed local provenance CA"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "steerfeed"),
        ]
    )
    no_usage = dict.fromkeys(
        (
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **no_usage),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "steerfeed clip generator"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "steerfeed"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **no_usage),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    folder.mkdir(parents=True, exist_ok=True)
    key_path = folder / KEY_FILE
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
    (folder / CHAIN_FILE).write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (folder / ANCHOR_FILE).write_bytes(ca.public_bytes(pem))
    logger.info("made provenance signing credentials in %s", folder)


def _c2pa_settings(anchors: list[bytes] | None = None) -> Any:
    import c2pa

    cfg: dict[str, Any] = {
        "builder": {"thumbnail": {"enabled": False}},
        "verify": {"ocsp_fetch": False, "remote_manifest_fetch": False},
    }
    if anchors:
        cfg["trust"] = {"trust_anchors": b"".join(anchors).decode()}
        cfg["verify"]["verify_trust"] = True
    return c2pa.Settings.from_dict(cfg)


class ProvenanceSigner:
    """Signs mp4s with a C2PA manifest.

    Parameters
    ----------
    folder
        Holds the key and certificates (made on first use when missing).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def ensure_credentials(self) -> None:
        """Make the key and certificates when the folder has none."""
        with _make_lock:
            if not (self.folder / KEY_FILE).exists() or not (self.folder / CHAIN_FILE).exists():
                _make_credentials(self.folder)

    @property
    def trust_anchor(self) -> Path:
        """The certificate a verifier of this deployment's clips trusts."""
        return self.folder / ANCHOR_FILE

    def sign(self, src: Path, dst: Path, record: dict[str, Any]) -> dict[str, Any]:
        """Write ``src`` to ``dst`` with a signed manifest holding ``record`` (plus the video
        stream's SHA-256); return the record as embedded."""
        import c2pa

        self.ensure_credentials()
        record = {**record, "video_sha256": video_stream_sha256(src)}
        manifest = {
            "claim_generator_info": [{"name": "steerfeed", "version": "0.1.0"}],
            "title": f"steerfeed clip {record.get('item_id', '')}".strip(),
            "format": "video/mp4",
            "assertions": [
                {
                    "label": "c2pa.actions",
                    "data": {
                        "actions": [
                            {
                                "action": "c2pa.created",
                                "digitalSourceType": DIGITAL_SOURCE_TYPE,
                                "softwareAgent": {"name": "steerfeed"},
                                "when": record.get("generated_at"),
                            }
                        ]
                    },
                },
                {"label": ASSERTION, "data": record},
            ],
        }
        try:
            info = c2pa.C2paSignerInfo(
                c2pa.C2paSigningAlg.ES256,
                (self.folder / CHAIN_FILE).read_bytes(),
                (self.folder / KEY_FILE).read_bytes(),
                None,
            )
            signer = c2pa.Signer.from_info(info)
            ctx = c2pa.Context(_c2pa_settings())
            builder = c2pa.Builder(json.dumps(manifest, default=str), context=ctx)
            tmp = dst.with_suffix(dst.suffix + ".signing")
            tmp.unlink(missing_ok=True)
            builder.sign_file(str(src), str(tmp), signer)
            tmp.replace(dst)
        except Exception as exc:
            msg = f"cannot sign provenance into {dst.name} ({type(exc).__name__}: {exc})"
            raise ProvenanceError(msg) from exc
        return record


def verify_file(
    path: Path, *, trust_anchors: list[Path] | None = None, require_trusted: bool = False
) -> dict[str, Any]:
    """Check a file's C2PA manifest: signature, the file hash, our assertion's video-stream
    hash and (with anchors) whether the signer is trusted.

    Returns a report whose ``ok`` is True only when a manifest is present, every check passes
    (an untrusted signer aside, unless ``require_trusted``) and the stream hash matches.
    """
    import c2pa

    path = Path(path)
    report: dict[str, Any] = {"file": str(path), "ok": False, "has_manifest": False}
    if not path.is_file():
        report["error"] = f"no such file {path}"
        return report
    anchors = [p.read_bytes() for p in trust_anchors or [] if p.is_file()]
    try:
        reader = c2pa.Reader(str(path), context=c2pa.Context(_c2pa_settings(anchors)))
    except Exception as exc:  # no manifest, or one too broken to parse
        report["error"] = f"no readable C2PA manifest ({type(exc).__name__}: {exc})"
        return report
    with reader:
        data = json.loads(reader.json())
        state = str(reader.get_validation_state())
    report["has_manifest"] = True
    active = data.get("manifests", {}).get(data.get("active_manifest") or "", {})
    results = data.get("validation_results", {}).get("activeManifest", {})
    failures = [f.get("code", "") for f in results.get("failure", [])]
    if not results:  # older readers: a flat status list
        failures = [s.get("code", "") for s in data.get("validation_status", [])]
    record: dict[str, Any] | None = None
    generated = False
    for a in active.get("assertions", []):
        if a.get("label") == ASSERTION:
            record = a.get("data")
        if a.get("label", "").startswith("c2pa.actions"):
            acts = a.get("data", {}).get("actions", [])
            generated |= any(x.get("digitalSourceType") == DIGITAL_SOURCE_TYPE for x in acts)
    try:
        stream_hash = video_stream_sha256(path)
    except Exception as exc:
        stream_hash = f"unreadable ({type(exc).__name__})"
    stream_ok = record is not None and record.get("video_sha256") == stream_hash
    integrity = [f for f in failures if f not in UNTRUSTED_CODES]
    trusted = bool(anchors) and state == "Trusted"
    report.update(
        state=state,
        failures=failures,
        signature_and_file_hash_valid=not integrity,
        video_stream_hash_valid=stream_ok,
        trusted=trusted,
        generated=generated,
        signer=active.get("signature_info", {}),
        record=record,
    )
    report["ok"] = (not integrity) and stream_ok and (trusted or not require_trusted)
    return report
