"""A device written to the original certificate-rotation protocol alone, on
AWS's IoT Device SDK for Python v2 (awsiotsdk, awscrt), as a fleet that
did not use fleetcert would have written it:

- one subscription to ``management/topic/<thing>/#`` (its customer policy
  allows that filter, fleetcert's own policy would not);
- ``csr_req`` (any payload) -> a new key and CSR made by openssl ->
  ``csr_res`` as ``{"CSR": pem}``, no rotation id;
- ``crt`` -> disconnect, reconnect with the new certificate and key, and
  publish ``crt_ack`` as ``{}``.

Prints one JSON line per step to stdout; exits 0 once crt_ack is
published on the new certificate, 1 on a timeout or an error.

usage: original_device.py PORT ROOT_CA CERT KEY THING WORKDIR TIMEOUT_S
"""

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from awscrt import mqtt
from awsiot import mqtt_connection_builder


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def connect(port, root_ca, cert, key, thing):
    conn = mqtt_connection_builder.mtls_from_path(
        endpoint="127.0.0.1",
        port=port,
        cert_filepath=str(cert),
        pri_key_filepath=str(key),
        ca_filepath=str(root_ca),
        client_id=thing,
        clean_session=False,
        keep_alive_secs=30,
    )
    conn.connect().result(timeout=20)
    return conn


def new_key_and_csr(workdir, thing):
    key = workdir / "new.key"
    csr = workdir / "new.csr"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)],
        check=True,
    )
    subprocess.run(
        ["openssl", "req", "-new", "-key", str(key), "-subj", f"/CN={thing}", "-out", str(csr)],
        check=True,
    )
    return key, csr.read_text()


def main():
    port, root_ca, cert, key, thing, workdir, timeout_s = sys.argv[1:8]
    port, timeout_s, workdir = int(port), float(timeout_s), Path(workdir)
    prefix = f"management/topic/{thing}"
    inbox = []
    arrived = threading.Condition()

    def on_message(topic, payload, **_kwargs):
        with arrived:
            inbox.append((topic, payload))
            arrived.notify_all()

    def next_message(suffix, deadline):
        with arrived:
            while True:
                for i, (topic, payload) in enumerate(inbox):
                    if topic == f"{prefix}/{suffix}":
                        del inbox[i]
                        return payload
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {suffix} within {timeout_s} s")
                arrived.wait(left)

    deadline = time.monotonic() + timeout_s
    conn = connect(port, root_ca, cert, key, thing)
    subscribed, _ = conn.subscribe(f"{prefix}/#", mqtt.QoS.AT_LEAST_ONCE, on_message)
    granted = subscribed.result(timeout=20)
    if granted.get("qos") is None:
        raise RuntimeError(f"subscription refused: {granted}")
    say("subscribed", filter=f"{prefix}/#", qos=str(granted.get("qos")))

    next_message("csr_req", deadline)
    say("csr_req")
    new_key, csr = new_key_and_csr(workdir, thing)
    published, _ = conn.publish(f"{prefix}/csr_res", json.dumps({"CSR": csr}), mqtt.QoS.AT_LEAST_ONCE)
    published.result(timeout=20)
    say("csr_res")

    crt = json.loads(next_message("crt", deadline))
    new_cert = workdir / "new.pem"
    new_cert.write_text(crt["certificatePem"])
    say("crt", certificateId=crt.get("certificateId"))
    conn.disconnect().result(timeout=20)

    conn = connect(port, root_ca, new_cert, new_key, thing)
    published, _ = conn.publish(f"{prefix}/crt_ack", "{}", mqtt.QoS.AT_LEAST_ONCE)
    published.result(timeout=20)
    say("crt_ack", certificateId=crt.get("certificateId"))
    conn.disconnect().result(timeout=20)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the test reads the reason
        say("error", reason=f"{type(e).__name__}: {e}")
        sys.exit(1)
