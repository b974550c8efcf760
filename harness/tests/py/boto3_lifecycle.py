"""The JITR CA lifecycle through the emulator's AWS IoT API with boto3 (an
AWS client fleetcert did not write), keys and certificates made with
`cryptography`, and a device that connects over mutual TLS with Python's
own ssl module and a hand-written MQTT 3.1.1 CONNECT.

Usage: boto3_lifecycle.py <api endpoint url> <mqtt port> <server root CA file> <work dir>

Prints one JSON line per step ({"step": ..., ...}) and exits 0 when every
check held; an AssertionError names the first that did not.
Run by harness/tests/boto3_api.rs with .tools/venv-cfnlint's python
(boto3 and cryptography come with moto there).
"""

import datetime
import json
import os
import socket
import ssl
import sys
import time

import boto3
import botocore.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def say(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


def error_code(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded")


def certificate(cn, key, issuer_cert=None, issuer_key=None, ca=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    return builder.sign(issuer_key or key, hashes.SHA256())


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def mqtt_connack(port, root_ca, chain, key, client_id):
    """CONNECT over mutual TLS; the CONNACK's return code, or None when the
    broker closes the connection without one (as AWS IoT does on JITR)."""
    context = ssl.create_default_context(cafile=root_ca)
    context.load_cert_chain(chain, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            cid = client_id.encode()
            body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
            tls.sendall(bytes([0x10, len(body)]) + body)
            try:
                ack = tls.recv(4)
            except (ConnectionError, ssl.SSLError, socket.timeout):
                return None
            if len(ack) < 4 or ack[0] != 0x20:
                return None
            return ack[3]


def main():
    endpoint, mqtt_port, root_ca, work = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    session = boto3.session.Session(
        aws_access_key_id="any", aws_secret_access_key="any", region_name="eu-west-1"
    )
    iot = session.client("iot", endpoint_url=endpoint)
    data = session.client("iot-data", endpoint_url=endpoint)

    code = iot.get_registration_code()["registrationCode"]
    assert len(code) == 64, code
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("boto3 Fleet CA", ca_key, ca=True)
    verification = certificate(code, ec.generate_private_key(ec.SECP256R1()), ca, ca_key)
    wrong = certificate("not-the-code", ec.generate_private_key(ec.SECP256R1()), ca, ca_key)
    assert error_code(
        lambda: iot.register_ca_certificate(
            caCertificate=pem(ca), verificationCertificate=pem(wrong)
        )
    ) == ("RegistrationCodeValidationException", 400)
    ca_id = iot.register_ca_certificate(
        caCertificate=pem(ca), verificationCertificate=pem(verification)
    )["certificateId"]
    described = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert described["status"] == "INACTIVE", described
    assert isinstance(described["creationDate"], datetime.datetime), described
    iot.update_ca_certificate(
        certificateId=ca_id, newStatus="ACTIVE", newAutoRegistrationStatus="ENABLE"
    )
    described = iot.describe_ca_certificate(certificateId=ca_id)["certificateDescription"]
    assert (described["status"], described["autoRegistrationStatus"]) == ("ACTIVE", "ENABLE")
    listed = [c["certificateId"] for c in iot.list_ca_certificates()["certificates"]]
    assert listed == [ca_id], listed
    say("ca", caId=ca_id)

    # A device signed by the CA: JITR over mutual TLS.
    device_key = ec.generate_private_key(ec.SECP256R1())
    device = certificate("boto-thing-1", device_key, ca, ca_key)
    chain = os.path.join(work, "device.chain.pem")
    key_file = os.path.join(work, "device.key.pem")
    with open(chain, "w") as f:
        f.write(pem(device) + pem(ca))
    with open(key_file, "wb") as f:
        f.write(
            device_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    first = mqtt_connack(mqtt_port, root_ca, chain, key_file, "boto-thing-1")
    assert first is None, f"the first connection is refused, got CONNACK {first}"
    device_id = device.fingerprint(hashes.SHA256()).hex()
    status = None
    for _ in range(100):
        status = iot.describe_certificate(certificateId=device_id)["certificateDescription"]["status"]
        if status == "ACTIVE":
            break
        time.sleep(0.05)
    assert status == "ACTIVE", status
    assert mqtt_connack(mqtt_port, root_ca, chain, key_file, "boto-thing-1") == 0
    by_ca = [c["certificateId"] for c in iot.list_certificates_by_ca(caCertificateId=ca_id)["certificates"]]
    assert by_ca == [device_id], by_ca
    principals = iot.list_thing_principals(thingName="boto-thing-1")["principals"]
    assert [p.rsplit("/", 1)[1] for p in principals] == [device_id], principals
    say("jitr", certificateId=device_id)

    # Certificates, things and policies.
    made = iot.create_keys_and_certificate(setAsActive=True)
    assert made["keyPair"]["PrivateKey"].startswith("-----BEGIN"), made
    iot.create_thing(thingName="boto-thing-2", attributePayload={"attributes": {"model": "x1"}})
    iot.attach_thing_principal(thingName="boto-thing-2", principal=made["certificateArn"])
    assert iot.list_principal_things(principal=made["certificateArn"])["things"] == ["boto-thing-2"]
    document = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]})
    iot.create_policy(policyName="boto-policy", policyDocument=document)
    assert json.loads(iot.get_policy(policyName="boto-policy")["policyDocument"]) == json.loads(document)
    assert error_code(lambda: iot.create_policy(policyName="boto-policy", policyDocument=document)) == (
        "ResourceAlreadyExistsException", 409)
    iot.attach_policy(policyName="boto-policy", target=made["certificateArn"])
    attached = iot.list_attached_policies(target=made["certificateArn"])["policies"]
    assert [p["policyName"] for p in attached] == ["boto-policy"], attached
    assert error_code(lambda: iot.delete_certificate(certificateId=made["certificateId"])) == (
        "CertificateStateException", 406)
    iot.update_certificate(certificateId=made["certificateId"], newStatus="INACTIVE")
    assert error_code(lambda: iot.delete_certificate(certificateId=made["certificateId"])) == (
        "DeleteConflictException", 409)
    iot.detach_policy(policyName="boto-policy", target=made["certificateArn"])
    iot.detach_thing_principal(thingName="boto-thing-2", principal=made["certificateArn"])
    iot.delete_certificate(certificateId=made["certificateId"])
    assert error_code(lambda: iot.describe_certificate(certificateId=made["certificateId"])) == (
        "ResourceNotFoundException", 404)
    iot.delete_thing(thingName="boto-thing-2")
    for i in range(12):
        iot.create_thing(thingName=f"paged-{i:02}")
    pages = list(iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 5}))
    names = [t["thingName"] for page in pages for t in page["things"]]
    assert len(pages) == 3 and len(names) == 13, (len(pages), names)
    endpoint_address = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    assert endpoint_address.endswith(f":{mqtt_port}"), endpoint_address
    data.publish(topic="boto3/hello", qos=1, payload=b'{"hello": "world"}')
    say("registry", pages=len(pages))

    # Device Defender: an on-demand audit of the expiring-certificate check.
    task = iot.start_on_demand_audit_task(targetCheckNames=["DEVICE_CERTIFICATE_EXPIRING_CHECK"])["taskId"]
    audit = iot.describe_audit_task(taskId=task)
    assert audit["taskStatus"] == "COMPLETED", audit
    findings = iot.list_audit_findings(taskId=task, checkName="DEVICE_CERTIFICATE_EXPIRING_CHECK")["findings"]
    expiring = [f["nonCompliantResource"]["resourceIdentifier"]["deviceCertificateId"] for f in findings]
    assert device_id in expiring, expiring  # valid for 30 days, the threshold
    say("audit", taskId=task, findings=len(findings))

    # Revoke: the device is refused; deactivate the CA.
    iot.update_certificate(certificateId=device_id, newStatus="REVOKED")
    assert mqtt_connack(mqtt_port, root_ca, chain, key_file, "boto-thing-1") in (None, 5)
    assert error_code(lambda: iot.update_certificate(certificateId=device_id, newStatus="ACTIVE")) == (
        "CertificateStateException", 406)
    iot.update_ca_certificate(certificateId=ca_id, newStatus="INACTIVE", newAutoRegistrationStatus="DISABLE")
    say("revoked", certificateId=device_id)

    # A call the emulator does not serve: AWS's error, named.
    code_status = error_code(lambda: iot.list_topic_rules())
    assert code_status == ("UnknownOperationException", 404), code_status
    say("done")


if __name__ == "__main__":
    main()
