//! The cloud's AWS IoT API over HTTP, as a plain HTTP/1.1 client sends
//! restJson1 requests: the CA lifecycle and JITR of a device signed by a CA
//! registered at run time, one registry of truth (a certificate revoked
//! through the API loses its MQTT connection), AWS's errors with their
//! statuses, paging by the model's paginators, and calls the API does not
//! serve. The AWS SDK for Rust and `fleetcert ca` drive it in
//! `cli/tests/ca.rs`, boto3 in `harness/tests/boto3_api.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use emulator::api::{ApiOptions, ApiServer};
use emulator::{Cloud, CloudConfig};
use lambdas::memory::Fault;
use lambdas::ports::Operation;
use rcgen::{CertificateParams, DnType, KeyPair};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Transport};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn error_type(&self) -> &str {
        self.header("x-amzn-ErrorType").unwrap_or("")
    }
}

/// One request, `Connection: close`, the whole answer read back.
async fn call(api: &ApiServer, method: &str, target: &str, body: Option<Value>) -> Reply {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/eu-west-1/iot/aws4_request, SignedHeaders=host, Signature=00\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n{body}",
        addr = api.local_addr(),
        len = body.len(),
    );
    let mut tcp = tokio::net::TcpStream::connect(api.local_addr())
        .await
        .expect("connect to the api");
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .expect("the api answers within 10 s")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
    };
    Reply {
        status,
        headers,
        body,
    }
}

async fn cloud_with_api() -> (Cloud, ApiServer) {
    let cloud = Cloud::start(CloudConfig::new(common::synthesized(&[])))
        .await
        .expect("cloud");
    let api = cloud
        .serve_api(ApiOptions {
            synthesize: Some(Arc::new(|ids: &[String]| Ok(common::synthesized(ids)))),
            ..ApiOptions::default()
        })
        .await
        .expect("api");
    (cloud, api)
}

fn mqtt(
    cloud: &Cloud,
    client_id: &str,
    cert_pem: &str,
    key_der: Vec<u8>,
) -> (AsyncClient, EventLoop) {
    let mut roots = rustls::RootCertStore::empty();
    let root = rustls::pki_types::pem::PemObject::from_pem_slice(cloud.root_ca_pem().as_bytes())
        .expect("root pem");
    roots.add(root).expect("root");
    let cert: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes()).expect("cert pem");
    let config = rustls::ClientConfig::builder_with_provider(emulator::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der)),
        )
        .expect("client auth");
    let mut options = MqttOptions::new(client_id, "localhost", cloud.endpoint().port());
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ));
    AsyncClient::new(options, 16)
}

/// Whether the connection is accepted (CONNACK 0) within 5 s.
async fn connects(eventloop: &mut EventLoop) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return ack.code == rumqttc::ConnectReturnCode::Success;
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

/// Whether the open connection is closed by the broker within 5 s.
async fn closed(eventloop: &mut EventLoop) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_registered_through_the_api_lets_its_devices_in_by_jitr_and_a_revocation_drops_them() {
    let (cloud, api) = cloud_with_api().await;
    let code = call(&api, "GET", "/registrationcode", None).await;
    assert_eq!(code.status, 200);
    let code = code.body["registrationCode"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 64);

    let ca = common::TestCa::new("Outside Customer CA").unwrap();
    let verification = |cn: &str| {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .signed_by(&KeyPair::generate().unwrap(), ca.issuer())
            .unwrap()
            .pem()
    };
    // A verification certificate for another code is refused, nothing registered.
    let wrong = call(
        &api,
        "POST",
        "/cacertificate?setAsActive=true&allowAutoRegistration=true",
        Some(json!({"caCertificate": ca.pem, "verificationCertificate": verification("not-the-code")})),
    )
    .await;
    assert_eq!(wrong.error_type(), "RegistrationCodeValidationException");
    assert_eq!(wrong.status, 400);
    let none = call(&api, "GET", "/cacertificates", None).await;
    assert_eq!(none.body["certificates"], json!([]));

    let registered = call(
        &api,
        "POST",
        "/cacertificate?setAsActive=true&allowAutoRegistration=true",
        Some(json!({"caCertificate": ca.pem, "verificationCertificate": verification(&code)})),
    )
    .await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let ca_id = registered.body["certificateId"]
        .as_str()
        .unwrap()
        .to_owned();
    let again = call(
        &api,
        "POST",
        "/cacertificate",
        Some(json!({"caCertificate": ca.pem, "verificationCertificate": verification(&code)})),
    )
    .await;
    assert_eq!(again.error_type(), "ResourceAlreadyExistsException");
    assert_eq!(again.body["resourceId"], ca_id.as_str());
    let described = call(&api, "GET", &format!("/cacertificate/{ca_id}"), None).await;
    let d = &described.body["certificateDescription"];
    assert_eq!(d["status"], "ACTIVE", "{}", described.body);
    assert_eq!(d["autoRegistrationStatus"], "ENABLE");
    assert!(d["creationDate"].is_number(), "{d}");

    // The device: refused at first (auto-registered PENDING_ACTIVATION),
    // activated by jitr-activator through the redeployed JITR rule, then in.
    let device = ca.device("outside-1").unwrap();
    let (_c, mut first) = mqtt(
        &cloud,
        "outside-1",
        &device.cert_pem,
        device.key_der.clone(),
    );
    assert!(
        !connects(&mut first).await,
        "the first connection is refused"
    );
    let id = emulator::registry::certificate_id_of_der(&device.cert_der);
    let mut status = String::new();
    for _ in 0..100 {
        let c = call(&api, "GET", &format!("/certificates/{id}"), None).await;
        status = c.body["certificateDescription"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status == "ACTIVE" {
            assert_eq!(
                c.body["certificateDescription"]["caCertificateId"],
                ca_id.as_str()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "ACTIVE", "jitr-activator activated it");
    let by_ca = call(&api, "GET", &format!("/certificates-by-ca/{ca_id}"), None).await;
    assert_eq!(by_ca.body["certificates"][0]["certificateId"], id.as_str());
    let (client, mut second) = mqtt(
        &cloud,
        "outside-1",
        &device.cert_pem,
        device.key_der.clone(),
    );
    assert!(
        connects(&mut second).await,
        "activated, the device connects"
    );
    // iot-data Publish reaches it through the same broker.
    let topic = "management/topic/outside-1/crt";
    client
        .subscribe(topic, rumqttc::QoS::AtLeastOnce)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, second.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no SUBACK: {other:?}"),
        }
    }
    let published = call(
        &api,
        "POST",
        "/topics/management%2Ftopic%2Foutside-1%2Fcrt?qos=1",
        Some(json!({"from": "the api"})),
    )
    .await;
    assert_eq!(published.status, 200, "{}", published.body);
    loop {
        match tokio::time::timeout_at(deadline, second.poll()).await {
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                assert_eq!(p.topic, topic);
                assert_eq!(&p.payload[..], br#"{"from":"the api"}"#);
                break;
            }
            Ok(Ok(_)) => {}
            other => panic!("the published message did not arrive: {other:?}"),
        }
    }

    // Revoked through the API: the open connection is dropped, a new one refused.
    let revoked = call(
        &api,
        "PUT",
        &format!("/certificates/{id}?newStatus=REVOKED"),
        None,
    )
    .await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert!(
        closed(&mut second).await,
        "the revoked certificate's connection is closed"
    );
    let (_c, mut third) = mqtt(
        &cloud,
        "outside-1",
        &device.cert_pem,
        device.key_der.clone(),
    );
    assert!(
        !connects(&mut third).await,
        "a revoked certificate is refused"
    );
    let back = call(
        &api,
        "PUT",
        &format!("/certificates/{id}?newStatus=ACTIVE"),
        None,
    )
    .await;
    assert_eq!(back.error_type(), "CertificateStateException");
    assert!(cloud.lambda().access_log().denials().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_awss_with_the_models_status_and_nothing_changes() {
    let (cloud, api) = cloud_with_api().await;
    let unknown = "0".repeat(64);
    let missing = call(&api, "GET", &format!("/certificates/{unknown}"), None).await;
    assert_eq!(
        (missing.status, missing.error_type()),
        (404, "ResourceNotFoundException")
    );
    assert!(missing.body["message"].as_str().unwrap().contains(&unknown));

    let device = cloud.register_device("thing-1", 30).await.unwrap();
    let id = &device.certificate_id;
    let active = call(&api, "DELETE", &format!("/certificates/{id}"), None).await;
    assert_eq!(
        (active.status, active.error_type()),
        (406, "CertificateStateException")
    );
    call(
        &api,
        "PUT",
        &format!("/certificates/{id}?newStatus=INACTIVE"),
        None,
    )
    .await;
    let attached = call(&api, "DELETE", &format!("/certificates/{id}"), None).await;
    assert_eq!(
        (attached.status, attached.error_type()),
        (409, "DeleteConflictException")
    );
    assert!(
        cloud.registry().certificate(id).is_some(),
        "nothing deleted"
    );

    let bad_enum = call(
        &api,
        "PUT",
        &format!("/certificates/{id}?newStatus=GONE"),
        None,
    )
    .await;
    assert_eq!(
        (bad_enum.status, bad_enum.error_type()),
        (400, "InvalidRequestException")
    );
    assert!(bad_enum.body["message"].as_str().unwrap().contains("GONE"));
    assert_eq!(
        cloud.registry().status(id),
        Some(emulator::CertificateStatus::Inactive),
        "an invalid request changes nothing"
    );

    cloud
        .ports()
        .instruments
        .fail_next(Operation::DescribeThing, 1, Fault::Throttled);
    let throttled = call(&api, "GET", "/things/thing-1", None).await;
    assert_eq!(
        (throttled.status, throttled.error_type()),
        (400, "ThrottlingException")
    );
    let described = call(&api, "GET", "/things/thing-1", None).await;
    assert_eq!(described.body["thingName"], "thing-1");

    // Not implemented: named; no such path: said so; both with a body.
    let rules = call(&api, "GET", "/rules", None).await;
    assert_eq!(
        (rules.status, rules.error_type()),
        (404, "UnknownOperationException")
    );
    assert!(
        rules.body["message"]
            .as_str()
            .unwrap()
            .contains("ListTopicRules")
    );
    let nowhere = call(&api, "GET", "/no/such/path", None).await;
    assert_eq!(nowhere.error_type(), "UnknownOperationException");
    assert!(
        nowhere.body["message"]
            .as_str()
            .unwrap()
            .contains("/no/such/path")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_page_by_the_models_tokens() {
    let (_cloud, api) = cloud_with_api().await;
    for i in 0..23 {
        let r = call(&api, "POST", &format!("/things/t-{i:02}"), Some(json!({}))).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let target = match &token {
            Some(t) => format!("/things?maxResults=10&nextToken={t}"),
            None => "/things?maxResults=10".to_owned(),
        };
        let page = call(&api, "GET", &target, None).await;
        pages += 1;
        names.extend(
            page.body["things"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["thingName"].as_str().unwrap().to_owned()),
        );
        token = page.body["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 23);
    assert_eq!(names.first().map(String::as_str), Some("t-00"));
    let too_big = call(&api, "GET", "/things?maxResults=1000", None).await;
    assert_eq!(too_big.error_type(), "InvalidRequestException");

    // Attributes filter; there are no thing types.
    let r = call(
        &api,
        "POST",
        "/things/sensor-1",
        Some(json!({"attributePayload": {"attributes": {"model": "x100"}}})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let by_prefix = call(
        &api,
        "GET",
        "/things?attributeName=model&attributeValue=x1&usePrefixAttributeValue=true",
        None,
    )
    .await;
    assert_eq!(by_prefix.body["things"][0]["thingName"], "sensor-1");
    assert_eq!(by_prefix.body["things"].as_array().unwrap().len(), 1);
    let typed = call(
        &api,
        "POST",
        "/things/typed",
        Some(json!({"thingTypeName": "Sensor"})),
    )
    .await;
    assert_eq!(
        (typed.status, typed.error_type()),
        (404, "ResourceNotFoundException")
    );

    // Certificates: newest first, unless isAscendingOrder.
    let mut made = Vec::new();
    for _ in 0..3 {
        let c = call(&api, "POST", "/keys-and-certificate?setAsActive=true", None).await;
        assert_eq!(c.status, 200, "{}", c.body);
        assert!(
            c.body["keyPair"]["PrivateKey"]
                .as_str()
                .unwrap()
                .contains("PRIVATE KEY")
        );
        made.push(c.body["certificateId"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let ids = |r: &Reply| -> Vec<String> {
        r.body["certificates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["certificateId"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first = call(&api, "GET", "/certificates", None).await;
    let mut reversed = made.clone();
    reversed.reverse();
    assert_eq!(ids(&newest_first), reversed);
    let oldest_first = call(&api, "GET", "/certificates?isAscendingOrder=true", None).await;
    assert_eq!(ids(&oldest_first), made);
    let paged = call(&api, "GET", "/certificates?pageSize=2", None).await;
    assert_eq!(ids(&paged), reversed[..2].to_vec());
    let marker = paged.body["nextMarker"].as_str().unwrap();
    let rest = call(
        &api,
        "GET",
        &format!("/certificates?pageSize=2&marker={marker}"),
        None,
    )
    .await;
    assert_eq!(ids(&rest), reversed[2..].to_vec());
    assert!(rest.body.get("nextMarker").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_created_through_the_api_is_what_the_broker_enforces() {
    let (cloud, api) = cloud_with_api().await;
    let made = call(&api, "POST", "/keys-and-certificate?setAsActive=true", None).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let arn = made.body["certificateArn"].as_str().unwrap().to_owned();
    let pem = made.body["certificatePem"].as_str().unwrap().to_owned();
    let key: PrivatePkcs8KeyDer<'static> = rustls::pki_types::pem::PemObject::from_pem_slice(
        made.body["keyPair"]["PrivateKey"]
            .as_str()
            .unwrap()
            .as_bytes(),
    )
    .expect("a PKCS#8 key");
    let key = key.secret_pkcs8_der().to_vec();

    // ACTIVE but no policy: refused.
    let (_c, mut no_policy) = mqtt(&cloud, "kc-1", &pem, key.clone());
    assert!(!connects(&mut no_policy).await);

    let document = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "iot:Connect",
        "Resource": "arn:aws:iot:us-east-1:123456789012:client/kc-1"
    }]})
    .to_string();
    let bad = call(
        &api,
        "POST",
        "/policies/kc-policy",
        Some(json!({"policyDocument": "{not json"})),
    )
    .await;
    assert_eq!(bad.error_type(), "MalformedPolicyException");
    let created = call(
        &api,
        "POST",
        "/policies/kc-policy",
        Some(json!({"policyDocument": document})),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let attached = call(
        &api,
        "PUT",
        "/target-policies/kc-policy",
        Some(json!({"target": arn})),
    )
    .await;
    assert_eq!(attached.status, 200, "{}", attached.body);
    let (_c, mut allowed) = mqtt(&cloud, "kc-1", &pem, key.clone());
    assert!(
        connects(&mut allowed).await,
        "the api's policy lets it connect"
    );
    let (_c, mut other_id) = mqtt(&cloud, "kc-2", &pem, key);
    assert!(
        !connects(&mut other_id).await,
        "as another client id the policy does not allow"
    );
}
