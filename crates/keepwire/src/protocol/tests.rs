//! Protocol tests: bytes laid out by hand from each version's tables, every frame truncated
//! at every offset, the authenticators against values computed with Python's hashlib, the
//! simulators' answers, and property tests of the text round trip.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::liveness::Beat;
use crate::text::from_hex;

/// Hex with spaces between groups.
fn hx(s: &str) -> Vec<u8> {
    from_hex(s).unwrap()
}

/// A field of `n` bytes: `s` padded with NULs.
fn pad(s: &str, n: usize) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    assert!(v.len() <= n);
    v.resize(n, 0);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// 2026-01-02 03:04:05 UTC (`date -u -d '2026-01-02 03:04:05' +%s`).
fn jan2() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_767_323_045)
}

fn smpp() -> Arc<dyn Protocol> {
    Template::Smpp.protocol()
}

fn cmpp3() -> Arc<dyn Protocol> {
    Template::Cmpp3.protocol()
}

fn cmpp2() -> Arc<dyn Protocol> {
    Template::Cmpp2.protocol()
}

/// Decodes to `text`, encodes back to the same bytes, and every truncation either errors or
/// (cut at a field boundary that still makes a valid PDU) round-trips too.
fn check(p: &dyn Protocol, frame: &[u8], text: &str) {
    let decoded = p.decode_text(frame).unwrap();
    assert_eq!(decoded.to_string(), text);
    assert_eq!(&p.encode_text(text, 999).unwrap()[..], frame, "{text}");
    for cut in 0..frame.len() {
        let short = &frame[..cut];
        match p.decode_text(short) {
            Ok(t) => assert_eq!(&p.encode_text(&t.to_string(), 0).unwrap()[..], short),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

// ---------------------------------------------------------------- SMPP

#[test]
fn smpp_bind_transmitter_matches_smpplib_bytes() {
    // protocols reference 1.3, generated with smpplib: 00000021 then this frame.
    let frame = hx("00000002 00000000 00000001 7465737400 73656372657400 00 34 00 00 00");
    check(
        &*smpp(),
        &frame,
        "bind_transmitter seq=1 system_id=test password=secret",
    );
    let account: Account = "test:secret".parse().unwrap();
    let login = smpp().login(&account, BindMode::Transmitter, 1, jan2());
    assert_eq!(&login[..], &frame[..]);
}

#[test]
fn smpp_header_only_pdus() {
    let p = smpp();
    check(&*p, &hx("00000015 00000000 00000007"), "enquire_link seq=7");
    check(
        &*p,
        &hx("80000015 00000000 00000007"),
        "enquire_link_resp seq=7 status=ESME_ROK",
    );
    check(&*p, &hx("00000006 00000000 00000003"), "unbind seq=3");
    check(
        &*p,
        &hx("80000006 00000000 00000003"),
        "unbind_resp seq=3 status=ESME_ROK",
    );
    check(
        &*p,
        &hx("80000000 00000003 00000005"),
        "generic_nack seq=5 status=ESME_RINVCMDID",
    );
    assert_eq!(&p.logout(3)[..], &hx("00000006 00000000 00000003")[..]);
}

fn submit_sm_frame() -> Vec<u8> {
    cat(&[
        &hx("00000004 00000000 00000002"),
        b"\0",                   // service_type C 6
        &[1, 1],                 // source_addr_ton, source_addr_npi
        b"10086\0",              // source_addr C 21
        &[1, 1],                 // dest_addr_ton, dest_addr_npi
        b"13800138000\0",        // destination_addr C 21
        &[0, 0, 0],              // esm_class, protocol_id, priority_flag
        b"\0\0",                 // schedule_delivery_time, validity_period
        &[1, 0, 0, 0],           // registered_delivery, replace_if_present, data_coding, default id
        &[11],                   // sm_length
        b"hello world",          // short_message
        &hx("0424 0003 616263"), // TLV message_payload "abc"
        &hx("1403 0000"),        // an unknown TLV, empty
    ])
}

#[test]
fn smpp_submit_sm_with_tlvs() {
    check(
        &*smpp(),
        &submit_sm_frame(),
        "submit_sm seq=2 source_addr_ton=1 source_addr_npi=1 source_addr=10086 dest_addr_ton=1 \
         dest_addr_npi=1 destination_addr=13800138000 registered_delivery=1 \
         short_message=hello\\x20world tlv.0x0424=abc tlv.0x1403=",
    );
}

#[test]
fn smpp_ucs2_prints_as_text() {
    let frame = cat(&[
        &hx("00000004 00000000 00000009"),
        &[0, 0, 0, 0, 0, 0], // service_type, source ton, npi, source_addr, dest ton, npi
        b"13800138000\0",
        &[0; 7],          // esm_class .. replace_if_present_flag
        &[8, 0, 4],       // data_coding UCS-2, sm_default_msg_id, sm_length
        &hx("4f60 597d"), // 你好 in UTF-16BE
    ]);
    check(
        &*smpp(),
        &frame,
        "submit_sm seq=9 destination_addr=13800138000 data_coding=8 short_message=你好",
    );
}

#[test]
fn smpp_responses_with_and_without_body() {
    let p = smpp();
    check(
        &*p,
        &hx("80000004 00000000 00000002 313200"),
        "submit_sm_resp seq=2 status=ESME_ROK message_id=12",
    );
    // cloudhopper accepts an error response with no body: so do we, and keep it absent.
    check(
        &*p,
        &hx("80000004 00000045 00000002"),
        "submit_sm_resp seq=2 status=ESME_RSUBMITFAIL",
    );
    check(
        &*p,
        &hx("80000005 00000000 00000004 00"),
        "deliver_sm_resp seq=4 status=ESME_ROK message_id=",
    );
    check(
        &*p,
        &hx("80000009 00000000 00000001 534d534300 0210 0001 34"),
        "bind_transceiver_resp seq=1 status=ESME_ROK system_id=SMSC tlv.0x0210=4",
    );
}

#[test]
fn smpp_unknown_command_keeps_its_body() {
    let frame = hx("00000103 00000000 00000009 0102");
    check(&*smpp(), &frame, "0x00000103 seq=9 body=0102");
    let e = smpp().encode_text("data_sm seq=1", 1).unwrap_err();
    assert!(e.is_unknown_command());
    assert!(e.to_string().contains("submit_sm"), "{e}");
}

#[test]
fn smpp_errors_name_field_and_offset() {
    let frame = cat(&[
        &hx("00000004 00000000 00000001"),
        &[0, 0, 0],           // service_type, source ton, npi
        b"123456789012345\0", // source_addr: 15 characters, wire offsets 19..35
        &[0, 0],              // dest ton, npi; destination_addr starts at 37
        &[b'A'; 30],
    ]);
    let e = smpp().decode_text(&frame).unwrap_err();
    assert!(e.is_malformed());
    assert_eq!(
        e.to_string(),
        "submit_sm at offset 37: destination_addr: c-string not terminated within 21 bytes \
         (at most 21)"
    );
    let e = smpp().decode_text(b"\0\0\0\x04\0\0").unwrap_err();
    assert!(e.is_too_short());
    let e = smpp()
        .encode_text("submit_sm destination_addr=1234567890123456789012", 1)
        .unwrap_err();
    assert!(e.is_bad_value());
    assert!(e.to_string().starts_with("field destination_addr: "), "{e}");
    let e = smpp().encode_text("submit_sm dest=1", 1).unwrap_err();
    assert!(e.is_unknown_field());
    assert!(
        e.to_string()
            .contains("valid fields: seq, status, service_type"),
        "{e}"
    );
    let e = smpp()
        .encode_text("submit_sm short_message=a short_message=b", 1)
        .unwrap_err();
    assert!(e.is_unknown_field());
    assert!(
        smpp()
            .encode_text("submit_sm seq=1 seq=2", 0)
            .unwrap_err()
            .is_unknown_field()
    );
    let long = "x".repeat(256);
    assert!(
        smpp()
            .encode_text(&format!("submit_sm short_message={long}"), 1)
            .is_err()
    );
}

#[test]
fn smpp_defaults_and_sequence() {
    let p = smpp();
    let f = p.encode_text("submit_sm short_message=hi", 42).unwrap();
    assert_eq!(p.sequence(&f), Some(42));
    assert!(!p.is_response(&f));
    let f = p
        .encode_text("submit_sm_resp seq=0x10 status=8", 1)
        .unwrap();
    assert_eq!(&f[..], &hx("80000004 00000008 00000010")[..]);
    assert!(p.is_response(&f));
    // bind defaults: interface_version 0x34.
    let f = p.encode_text("bind_transceiver system_id=a", 1).unwrap();
    assert_eq!(&f[12..], b"a\0\0\0\x34\0\0\0");
}

#[test]
fn smpp_heartbeat() {
    let hb = smpp().heartbeat();
    let ping = hb.ping(1);
    assert_eq!(&ping[..], &hx("00000015 00000000 7fff0001")[..]);
    assert_eq!(hb.classify(&ping), Some(Beat::Ping));
    let pong = hb.pong(&hx("00000015 00000000 00000009"));
    assert_eq!(&pong[..], &hx("80000015 00000000 00000009")[..]);
    assert_eq!(hb.classify(&pong), Some(Beat::Pong));
    assert_eq!(hb.classify(&submit_sm_frame()), None);
    assert_eq!(hb.classify(&hx("00000015")), None);
}

#[test]
fn smpp_check_login() {
    let p = smpp();
    let acct: Account = "test:secret".parse().unwrap();
    let login = p.login(&acct, BindMode::Transceiver, 5, jan2());
    assert!(
        p.check_login(&acct, &login, &hx("80000009 00000000 00000005 534d534300"))
            .is_ok()
    );
    let e = p
        .check_login(&acct, &login, &hx("80000009 0000000f 00000005"))
        .unwrap_err();
    assert_eq!(e.status(), Some(0x0f));
    assert_eq!(
        e.to_string(),
        "bind refused: status 0x0000000f (ESME_RINVSYSID)"
    );
    let e = p
        .check_login(&acct, &login, &hx("80000009 00000000 00000006 00"))
        .unwrap_err();
    assert!(e.is_not_a_response());
    let e = p
        .check_login(&acct, &login, &hx("80000004 00000000 00000005 00"))
        .unwrap_err();
    assert!(e.is_not_a_response());
    let e = p
        .check_login(&acct, &login, &hx("80000000 00000004 00000005"))
        .unwrap_err();
    assert!(e.is_refused());
    assert!(p.check_account(&"a:123456789".parse().unwrap()).is_err());
    let e = p
        .check_account(&"a234567890123456:x".parse().unwrap())
        .unwrap_err();
    assert!(e.is_bad_account());
}

#[test]
fn smpp_client_answers() {
    let p = smpp();
    let deliver = p
        .encode_text("deliver_sm seq=77 short_message=x", 1)
        .unwrap();
    assert_eq!(
        &p.client_answer(&deliver).unwrap()[..],
        &hx("80000005 00000000 0000004d 00")[..]
    );
    assert_eq!(
        &p.client_answer(&hx("00000006 00000000 00000002")).unwrap()[..],
        &hx("80000006 00000000 00000002")[..]
    );
    assert_eq!(p.client_answer(&hx("80000004 00000000 00000002 00")), None);
    assert_eq!(
        &p.client_answer(&hx("00000103 00000000 00000002")).unwrap()[..],
        &hx("80000000 00000003 00000002")[..]
    );
    assert_eq!(p.client_answer(b"\0"), None);
}

fn config(accounts: Option<&str>, receipts: bool) -> SimulatorConfig {
    SimulatorConfig {
        accounts: accounts.map(|a| vec![a.parse().unwrap()]),
        receipts,
        next_message_id: Arc::new(AtomicU64::new(1)),
    }
}

#[test]
fn smsc_binds_submits_and_sends_receipts() {
    let p = smpp();
    let mut sim = p.simulator(&config(Some("test:secret"), true));
    let acct: Account = "test:secret".parse().unwrap();
    let login = p.login(&acct, BindMode::Transceiver, 1, jan2());
    let a = sim.answer(&login, jan2());
    assert!(!a.closes());
    assert!(p.check_login(&acct, &login, &a.frames[0]).is_ok());
    let submit = p
        .encode_text(
            "submit_sm seq=2 source_addr=10086 destination_addr=13800138000 short_message=hello",
            0,
        )
        .unwrap();
    let a = sim.answer(&submit, jan2());
    assert_eq!(a.frames.len(), 2);
    assert_eq!(
        p.decode_text(&a.frames[0]).unwrap().to_string(),
        "submit_sm_resp seq=2 status=ESME_ROK message_id=1"
    );
    assert_eq!(
        p.decode_text(&a.frames[1]).unwrap().to_string(),
        "deliver_sm seq=1 source_addr=13800138000 destination_addr=10086 esm_class=4 \
         short_message=id:1\\x20sub:001\\x20dlvrd:001\\x20submit\\x20date:2601020304\
         \\x20done\\x20date:2601020304\\x20stat:DELIVRD\\x20err:000\\x20text:hello"
    );
    // The client's deliver_sm_resp is absorbed.
    assert_eq!(
        sim.answer(&hx("80000005 00000000 00000001 00"), jan2()),
        SimAnswer::default()
    );
    // A second submit gets a new id.
    let a = sim.answer(&submit, jan2());
    assert!(
        p.decode_text(&a.frames[0])
            .unwrap()
            .to_string()
            .ends_with("message_id=2")
    );
    // Unknown command: generic_nack, stays open.
    let a = sim.answer(&hx("00000103 00000000 00000009"), jan2());
    assert_eq!(&a.frames[0][..], &hx("80000000 00000003 00000009")[..]);
    assert!(!a.closes());
    // Bind again: already bound.
    let a = sim.answer(&login, jan2());
    assert_eq!(&a.frames[0][..8], &hx("80000009 00000005")[..]);
    // unbind: answered, then closed.
    let a = sim.answer(&p.logout(3), jan2());
    assert_eq!(&a.frames[0][..], &hx("80000006 00000000 00000003")[..]);
    assert!(a.closes());
}

#[test]
fn smsc_receipt_text_is_the_first_20_characters_of_the_message() {
    // Defect: the receipt's text was built from the submit's text form, so spaces showed as
    // `x20` (`text:hellox20fromx20smppl`).
    let p = smpp();
    let text_of = |submit: &str| {
        let mut sim = p.simulator(&config(None, true));
        let login = p.login(&"a:b".parse().unwrap(), BindMode::Transceiver, 1, jan2());
        assert!(!sim.answer(&login, jan2()).closes());
        let a = sim.answer(&p.encode_text(submit, 2).unwrap(), jan2());
        let pdu = p.decode_text(&a.frames[1]).unwrap();
        let body = pdu.get("short_message").unwrap().to_owned();
        let raw = super::value::unescape_bytes("short_message", &body).unwrap();
        let raw = String::from_utf8(raw).unwrap();
        raw.split_once(" text:").unwrap().1.to_owned()
    };
    assert_eq!(
        text_of("submit_sm short_message=hello\\x20from\\x20smpplib\\x20and\\x20more"),
        "hello from smpplib a"
    );
    assert_eq!(text_of("submit_sm short_message=a\\\\b"), "a\\b");
    assert_eq!(text_of("submit_sm"), "");
    // UCS-2: characters, not bytes; outside ASCII as '?'.
    assert_eq!(
        text_of("submit_sm data_coding=8 short_message=你好abcdefghijklmnopqrstuvwxyz"),
        "??abcdefghijklmnopqr"
    );
}

#[test]
fn smsc_refuses() {
    let p = smpp();
    let cfg = config(Some("test:secret"), false);
    let refused = |acct: &str| {
        let mut sim = p.simulator(&cfg);
        let login = p.login(&acct.parse().unwrap(), BindMode::Transmitter, 1, jan2());
        let a = sim.answer(&login, jan2());
        assert!(a.closes());
        u32::from_be_bytes(a.frames[0][4..8].try_into().unwrap())
    };
    assert_eq!(refused("test:wrong"), smpp::status::ESME_RINVPASWD);
    assert_eq!(refused("other:secret"), smpp::status::ESME_RINVSYSID);
    // Before bind: generic_nack ESME_RINVBNDSTS, then close.
    let mut sim = p.simulator(&cfg);
    let a = sim.answer(&submit_sm_frame(), jan2());
    assert_eq!(&a.frames[0][..], &hx("80000000 00000004 00000002")[..]);
    assert!(a.closes());
    // Shorter than the header; a body that does not decode.
    let a = p.simulator(&cfg).answer(b"\0\0\0\x04", jan2());
    assert_eq!(&a.frames[0][..8], &hx("80000000 00000002")[..]);
    assert!(a.closes());
    let mut sim = p.simulator(&config(None, false));
    let login = p.login(&"x:y".parse().unwrap(), BindMode::Transmitter, 1, jan2());
    assert!(!sim.answer(&login, jan2()).closes());
    let a = sim.answer(&hx("00000004 00000000 00000002 414243"), jan2());
    assert_eq!(&a.frames[0][..], &hx("80000000 00000002 00000002")[..]);
    assert!(a.closes());
}

#[test]
fn smsc_receipts_need_transceiver_and_receivers_cannot_submit() {
    let p = smpp();
    let cfg = config(None, true);
    let mut tx = p.simulator(&cfg);
    tx.answer(
        &p.login(&"a:b".parse().unwrap(), BindMode::Transmitter, 1, jan2()),
        jan2(),
    );
    assert_eq!(tx.answer(&submit_sm_frame(), jan2()).frames.len(), 1);
    let mut rx = p.simulator(&cfg);
    rx.answer(
        &p.login(&"a:b".parse().unwrap(), BindMode::Receiver, 1, jan2()),
        jan2(),
    );
    let a = rx.answer(&submit_sm_frame(), jan2());
    assert_eq!(&a.frames[0][..8], &hx("80000004 00000004")[..]);
}

// ---------------------------------------------------------------- CMPP

#[test]
fn cmpp_connect_matches_reference_bytes() {
    // protocols reference 2.3: 00000027 then this frame; the authenticator checked with
    // python3 -c 'import hashlib; print(hashlib.md5(b"901234" + bytes(9) + b"secret"
    //   + b"0102030405").hexdigest())'  ->  1c39df8b9c01798a8f35c3c785cf91ce
    let frame = hx("00000001 00000001 393031323334 1c39df8b9c01798a8f35c3c785cf91ce 30 0614dc45");
    let acct: Account = "901234:secret".parse().unwrap();
    assert_eq!(
        &cmpp3().login(&acct, BindMode::default(), 1, jan2())[..],
        &frame[..]
    );
    check(
        &*cmpp3(),
        &frame,
        "connect seq=1 source_addr=901234 authenticator_source=1c39df8b9c01798a8f35c3c785cf91ce \
         timestamp=102030405",
    );
    // 2.0: the same layout with Version 0x20.
    let mut v2 = frame.clone();
    v2[30] = 0x20;
    assert_eq!(
        &cmpp2().login(&acct, BindMode::default(), 1, jan2())[..],
        &v2[..]
    );
    check(
        &*cmpp2(),
        &v2,
        "connect seq=1 source_addr=901234 authenticator_source=1c39df8b9c01798a8f35c3c785cf91ce \
         timestamp=102030405",
    );
}

#[test]
fn cmpp_connect_resp_and_check_login() {
    let acct: Account = "901234:secret".parse().unwrap();
    // python3 -c 'import hashlib; print(hashlib.md5(bytes(4) + bytes.fromhex(
    //   "1c39df8b9c01798a8f35c3c785cf91ce") + b"secret").hexdigest())' (bytes(1) for 2.0)
    for (p, status, ismg, version) in [
        (
            cmpp3(),
            "00000000",
            "e9ed198350952cc89cfdfb0c747e8438",
            "30",
        ),
        (cmpp2(), "00", "9e21b4ca73ef610ad7e2a0c6990e1098", "20"),
    ] {
        let login = p.login(&acct, BindMode::default(), 1, jan2());
        let resp = hx(&format!("80000001 00000001 {status} {ismg} {version}"));
        assert_eq!(resp.len(), if status.len() == 8 { 29 } else { 26 });
        check(
            &*p,
            &resp,
            &format!("connect_resp seq=1 status=0 authenticator_ismg={ismg}"),
        );
        assert!(p.check_login(&acct, &login, &resp).is_ok());
        assert_eq!(
            p.check_login(&acct, &login, &resp).unwrap(),
            PartnerAuth::Verified
        );
        // A wrong authenticator is its own error; sixteen zeros are accepted as Missing: the
        // ISMG did not authenticate itself.
        let mut bad = resp.clone();
        bad[status.len() / 2 + 8] ^= 1;
        assert!(
            p.check_login(&acct, &login, &bad)
                .unwrap_err()
                .is_bad_authenticator()
        );
        let zeros = hx(&format!(
            "80000001 00000001 {status} {} {version}",
            "00".repeat(16)
        ));
        assert_eq!(
            p.check_login(&acct, &login, &zeros).unwrap(),
            PartnerAuth::Missing
        );
        // Another secret: the ISMG's authenticator does not match ours.
        let other: Account = "901234:other".parse().unwrap();
        assert!(
            p.check_login(&other, &login, &resp)
                .unwrap_err()
                .is_bad_authenticator()
        );
        // Status 3.
        let mut refused = zeros.clone();
        refused[8 + status.len() / 2 - 1] = 3;
        let e = p.check_login(&acct, &login, &refused).unwrap_err();
        assert_eq!(
            e.to_string(),
            "connect refused: status 3 (authentication failed)"
        );
        assert_eq!(e.status(), Some(3));
        // Wrong sequence; not a connect_resp; too short.
        let mut seq = resp.clone();
        seq[7] = 2;
        assert!(
            p.check_login(&acct, &login, &seq)
                .unwrap_err()
                .is_not_a_response()
        );
        assert!(
            p.check_login(&acct, &login, &hx("80000004 00000001"))
                .unwrap_err()
                .is_not_a_response()
        );
        assert!(
            p.check_login(&acct, &login, &resp[..20])
                .unwrap_err()
                .is_not_a_response()
        );
    }
}

/// SUBMIT laid out from the 3.0 table (reference 2.5), one destination, "hello".
fn submit_v3() -> Vec<u8> {
    cat(&[
        &hx("00000004 00000002"),
        &[0; 8],                 // Msg_Id
        &[1, 1, 1, 0],           // Pk_total, Pk_number, Registered_Delivery, Msg_level
        &pad("SVC", 10),         // Service_Id
        &[0],                    // Fee_UserType
        &pad("", 32),            // Fee_terminal_Id (32 in 3.0)
        &[0],                    // Fee_terminal_type (3.0 only)
        &[0, 0, 0],              // TP_pId, TP_udhi, Msg_Fmt
        b"901234",               // Msg_src
        b"01",                   // FeeType
        &pad("", 6),             // FeeCode
        &pad("", 17),            // ValId_Time
        &pad("", 17),            // At_Time
        &pad("10086", 21),       // Src_Id
        &[1],                    // DestUsr_tl
        &pad("13800138000", 32), // Dest_terminal_Id (32 in 3.0)
        &[0],                    // Dest_terminal_type (3.0 only)
        &[5],                    // Msg_Length
        b"hello",                // Msg_Content
        &pad("", 20),            // LinkID (3.0)
    ])
}

/// SUBMIT laid out from the 2.0 table.
fn submit_v2() -> Vec<u8> {
    cat(&[
        &hx("00000004 00000002"),
        &[0; 8],
        &[1, 1, 1, 0],
        &pad("SVC", 10),
        &[0],
        &pad("", 21), // Fee_terminal_Id (21 in 2.0), no Fee_terminal_type
        &[0, 0, 0],
        b"901234",
        b"01",
        &pad("", 6),
        &pad("", 17),
        &pad("", 17),
        &pad("10086", 21),
        &[1],
        &pad("13800138000", 21), // Dest_terminal_Id (21 in 2.0), no Dest_terminal_type
        &[5],
        b"hello",
        &pad("", 8), // Reserve (2.0)
    ])
}

const SUBMIT_TEXT: &str = "submit seq=2 registered_delivery=1 service_id=SVC msg_src=901234 \
                           src_id=10086 dest_terminal_id=13800138000 msg_content=hello";

#[test]
fn cmpp_submit_both_versions() {
    let v3 = submit_v3();
    let v2 = submit_v2();
    // Body sizes from the reference: 3.0 = 151 + 32n + L, 2.0 = 126 + 21n + L.
    assert_eq!(v3.len() - 8, 151 + 32 + 5);
    assert_eq!(v2.len() - 8, 126 + 21 + 5);
    check(&*cmpp3(), &v3, SUBMIT_TEXT);
    check(&*cmpp2(), &v2, SUBMIT_TEXT);
    // Each version's bytes are wrong for the other.
    assert!(cmpp2().decode_text(&v3).is_err());
    assert!(cmpp3().decode_text(&v2).is_err());
    // Several destinations, UCS-2.
    let line = "submit seq=3 msg_fmt=8 dest_terminal_id=1 dest_terminal_id=2 \
                dest_terminal_id=3 msg_content=你好\\u{20}!";
    for p in [cmpp3(), cmpp2()] {
        let f = p.encode_text(line, 0).unwrap();
        assert_eq!(p.decode_text(&f).unwrap().to_string(), line);
    }
}

#[test]
fn cmpp_submit_built_by_cmppy_decodes() {
    // cmppy 0.3: SubmitReq('901234', '你好', src_id='10086',
    // dest_terminal_id=['13800138000'], registered_delivery=1).message[4:] in hex: a 3.0
    // SUBMIT with cmppy's defaults (service_id MI, fee_usertype 2, msg_fmt 8, FeeCode 103013).
    check(
        &*cmpp3(),
        &hx(
            "00000004000000020000000000000000010101004d49000000000000000002000000000000000000\
             00000000000000000000000000000000000000000000000000000839303132333430313130333031\
             33000000000000000000000000000000000000000000000000000000000000000000003130303836\
             00000000000000000000000000000000013133383030313338303030000000000000000000000000\
             00000000000000000000044f60597d0000000000000000000000000000000000000000",
        ),
        "submit seq=2 registered_delivery=1 service_id=MI fee_usertype=2 msg_fmt=8 \
         msg_src=901234 fee_code=103013 src_id=10086 dest_terminal_id=13800138000 \
         msg_content=你好",
    );
}

#[test]
fn cmpp_submit_resp_both_versions() {
    // Msg_Id of reference 2.7: 01-02 03:04:05, gateway 1001, sequence 7.
    check(
        &*cmpp3(),
        &hx("80000004 00000002 110c414003e90007 00000000"),
        "submit_resp seq=2 msg_id=1228428541564616711 result=0",
    );
    check(
        &*cmpp2(),
        &hx("80000004 00000002 110c414003e90007 0d"),
        "submit_resp seq=2 msg_id=1228428541564616711 result=13",
    );
    assert_eq!(
        cmpp_sim::msg_id((1001 << 16) | 7, jan2()),
        0x110c_4140_03e9_0007
    );
}

/// A bench counts a response as a success only when its status says so: SMPP
/// command_status, CMPP Status/Result, ISO 8583 field 39.
#[test]
fn is_success_reads_the_status_of_every_template() {
    let s = smpp();
    let ok = s.encode_text("submit_sm_resp message_id=1", 2).unwrap();
    let fail = s
        .encode_text("submit_sm_resp status=ESME_RSUBMITFAIL", 2)
        .unwrap();
    assert!(s.is_success(&ok));
    assert!(!s.is_success(&fail));
    assert!(!s.is_success(b"short"));
    for (p, bad) in [
        (cmpp3(), "80000004 00000002 110c414003e90007 00000009"),
        (cmpp2(), "80000004 00000002 110c414003e90007 0d"),
    ] {
        let bad = hx(bad);
        let mut good = bad.clone();
        if let Some(last) = good.last_mut() {
            *last = 0;
        }
        assert!(p.is_success(&good));
        assert!(!p.is_success(&bad));
        let heartbeat = p.encode_text("active_test_resp", 3).unwrap();
        assert!(p.is_success(&heartbeat));
    }
    let iso = Template::Iso8583.protocol();
    let ok = iso.encode_text("0210 11=000001 39=00", 0).unwrap();
    let declined = iso.encode_text("0210 11=000001 39=51", 0).unwrap();
    let no_code = iso.encode_text("0210 11=000001", 0).unwrap();
    assert!(iso.is_success(&ok));
    assert!(!iso.is_success(&declined));
    assert!(!iso.is_success(&no_code));
}

fn deliver_report(version: cmpp::Version) -> Vec<u8> {
    let (term, tail, report_len) = match version {
        cmpp::Version::V3 => (32, 20, 71u8),
        cmpp::Version::V2 => (21, 8, 60u8),
    };
    let mut v = cat(&[
        &hx("00000005 00000009"),
        &hx("110c414003e90008"),   // Msg_Id
        &pad("10086", 21),         // Dest_Id
        &pad("", 10),              // Service_Id
        &[0, 0, 0],                // TP_pid, TP_udhi, Msg_Fmt
        &pad("13800138000", term), // Src_terminal_Id
    ]);
    if version == cmpp::Version::V3 {
        v.push(0); // Src_terminal_type
    }
    v.extend(cat(&[
        &[1, report_len],          // Registered_Delivery, Msg_Length
        &hx("110c414003e90007"),   // report Msg_Id
        b"DELIVRD",                // Stat
        b"2601020304",             // Submit_time
        b"2601020304",             // Done_time
        &pad("13800138000", term), // Dest_terminal_Id
        &hx("00000007"),           // SMSC_sequence
        &pad("", tail),            // LinkID / Reserved
    ]));
    v
}

#[test]
fn cmpp_deliver_status_report_both_versions() {
    let text = "deliver seq=9 msg_id=1228428541564616712 dest_id=10086 \
                src_terminal_id=13800138000 registered_delivery=1 \
                report_msg_id=1228428541564616711 report_stat=DELIVRD \
                report_submit_time=2601020304 report_done_time=2601020304 \
                report_dest_terminal_id=13800138000 report_smsc_sequence=7";
    let v3 = deliver_report(cmpp::Version::V3);
    let v2 = deliver_report(cmpp::Version::V2);
    // Body sizes: 3.0 = 97 + L, 2.0 = 73 + L; reports of 71 and 60.
    assert_eq!(v3.len() - 8, 97 + 71);
    assert_eq!(v2.len() - 8, 73 + 60);
    check(&*cmpp3(), &v3, text);
    check(&*cmpp2(), &v2, text);
    // An MO message (Registered_Delivery 0) and a registered one that is not a report.
    for p in [cmpp3(), cmpp2()] {
        for line in [
            "deliver seq=1 dest_id=10086 msg_content=hi",
            "deliver seq=1 registered_delivery=1 msg_content=",
            "deliver seq=1 registered_delivery=1 msg_content=short",
        ] {
            let f = p.encode_text(line, 0).unwrap();
            assert_eq!(p.decode_text(&f).unwrap().to_string(), line);
        }
        assert!(
            p.encode_text("deliver report_stat=DELIVRD", 0)
                .unwrap_err()
                .is_bad_value()
        );
    }
}

#[test]
fn cmpp_small_messages() {
    for p in [cmpp3(), cmpp2()] {
        check(&*p, &hx("00000008 00000005"), "active_test seq=5");
        check(
            &*p,
            &hx("80000008 00000005 00"),
            "active_test_resp seq=5 reserved=0",
        );
        check(&*p, &hx("80000008 00000005"), "active_test_resp seq=5");
        check(&*p, &hx("00000002 00000006"), "terminate seq=6");
        check(&*p, &hx("80000002 00000006"), "terminate_resp seq=6");
        check(&*p, &hx("00000006 00000006 ab"), "0x00000006 seq=6 body=ab");
        assert_eq!(&p.logout(6)[..], &hx("00000002 00000006")[..]);
        assert!(p.decode_text(b"\0\0\0\x08\0").unwrap_err().is_too_short());
    }
    check(
        &*cmpp3(),
        &hx("80000005 00000003 0000000000000001 00000000"),
        "deliver_resp seq=3 msg_id=1 result=0",
    );
    check(
        &*cmpp2(),
        &hx("80000005 00000003 0000000000000001 00"),
        "deliver_resp seq=3 msg_id=1 result=0",
    );
}

#[test]
fn cmpp_heartbeat_and_client_answers() {
    let p = cmpp3();
    let hb = p.heartbeat();
    assert_eq!(&hb.ping(2)[..], &hx("00000008 7fff0002")[..]);
    assert_eq!(hb.classify(&hx("00000008 00000001")), Some(Beat::Ping));
    assert_eq!(hb.classify(&hx("80000008 00000001 00")), Some(Beat::Pong));
    assert_eq!(hb.classify(&submit_v3()), None);
    let deliver = deliver_report(cmpp::Version::V3);
    assert_eq!(
        &p.client_answer(&deliver).unwrap()[..],
        &hx("80000005 00000009 110c414003e90008 00000000")[..]
    );
    assert_eq!(
        &cmpp2()
            .client_answer(&deliver_report(cmpp::Version::V2))
            .unwrap()[..],
        &hx("80000005 00000009 110c414003e90008 00")[..]
    );
    assert_eq!(
        &p.client_answer(&hx("00000002 00000004")).unwrap()[..],
        &hx("80000002 00000004")[..]
    );
    assert_eq!(p.client_answer(&hx("80000004 00000004 00")), None);
    assert_eq!(p.sequence(&hx("80000004 00000004")), Some(4));
    assert!(p.check_account(&"1234567:x".parse().unwrap()).is_err());
}

#[test]
fn ismg_logins() {
    for (p, v) in [(cmpp3(), 4usize), (cmpp2(), 1)] {
        let cfg = config(Some("901234:secret"), true);
        let status = |a: &SimAnswer| {
            a.frames[0][8..8 + v]
                .iter()
                .fold(0u32, |x, &b| x << 8 | u32::from(b))
        };
        let acct: Account = "901234:secret".parse().unwrap();
        let login = p.login(&acct, BindMode::default(), 1, jan2());
        let mut sim = p.simulator(&cfg);
        let a = sim.answer(&login, jan2());
        assert_eq!(status(&a), 0);
        assert!(!a.closes());
        assert!(p.check_login(&acct, &login, &a.frames[0]).is_ok());
        // Wrong secret: 3; unknown Source_Addr: 2; both close.
        for (who, want) in [("901234:wrong", 3), ("901235:secret", 2)] {
            let mut sim = p.simulator(&cfg);
            let login = p.login(&who.parse().unwrap(), BindMode::default(), 1, jan2());
            let a = sim.answer(&login, jan2());
            assert_eq!(status(&a), want);
            assert!(a.closes());
            let e = p
                .check_login(&who.parse().unwrap(), &login, &a.frames[0])
                .unwrap_err();
            assert_eq!(e.status(), Some(want));
        }
        // Before login: TERMINATE, close.
        let submit = p.encode_text(SUBMIT_TEXT, 0).unwrap();
        let a = p.simulator(&cfg).answer(&submit, jan2());
        assert_eq!(&a.frames[0][..4], &hx("00000002")[..]);
        assert!(a.closes());
        // Accept-all: status 0 with a zero authenticator, which check_login accepts as
        // Missing.
        let mut any = p.simulator(&config(None, false));
        let a = any.answer(&login, jan2());
        assert_eq!(
            p.check_login(&acct, &login, &a.frames[0]).unwrap(),
            PartnerAuth::Missing
        );
    }
    // A 3.0 client against a 2.0 ISMG: version too high.
    let login = cmpp3().login(&"901234:s".parse().unwrap(), BindMode::default(), 1, jan2());
    let a = cmpp2()
        .simulator(&config(None, false))
        .answer(&login, jan2());
    assert_eq!(a.frames[0][8], 4);
    assert!(a.closes());
}

#[test]
fn ismg_submits_and_reports() {
    for p in [cmpp3(), cmpp2()] {
        let mut sim = p.simulator(&config(None, true));
        let login = p.login(&"901234:s".parse().unwrap(), BindMode::default(), 1, jan2());
        sim.answer(&login, jan2());
        let submit = p.encode_text(SUBMIT_TEXT, 0).unwrap();
        let a = sim.answer(&submit, jan2());
        assert_eq!(a.frames.len(), 2);
        let resp = p.decode_text(&a.frames[0]).unwrap();
        assert_eq!(resp.command, "submit_resp");
        assert_eq!(resp.get("result"), Some("0"));
        let id = resp.get("msg_id").unwrap().to_owned();
        let report = p.decode_text(&a.frames[1]).unwrap();
        assert_eq!(report.command, "deliver");
        assert_eq!(report.get("registered_delivery"), Some("1"));
        assert_eq!(report.get("report_msg_id"), Some(id.as_str()));
        assert_eq!(report.get("report_stat"), Some("DELIVRD"));
        assert_eq!(report.get("report_dest_terminal_id"), Some("13800138000"));
        assert_eq!(report.get("dest_id"), Some("10086"));
        // Message ids differ.
        let again = sim.answer(&submit, jan2());
        let id2 = p
            .decode_text(&again.frames[0])
            .unwrap()
            .get("msg_id")
            .unwrap()
            .to_owned();
        assert_ne!(id, id2);
        // The SP's DELIVER_RESP is absorbed; ACTIVE_TEST answered; TERMINATE closes.
        assert!(
            sim.answer(&p.client_answer(&a.frames[1]).unwrap(), jan2())
                .frames
                .is_empty()
        );
        let a = sim.answer(&hx("00000008 00000010"), jan2());
        assert_eq!(&a.frames[0][..], &hx("80000008 00000010 00")[..]);
        // A SUBMIT that does not decode: Result 1, close.
        let a = sim.answer(&hx("00000004 00000011 00"), jan2());
        assert!(a.closes());
        assert_eq!(*a.frames[0].last().unwrap(), 1);
        let a = sim.answer(&p.logout(12), jan2());
        assert_eq!(&a.frames[0][..], &hx("80000002 0000000c")[..]);
        assert!(a.closes());
        // Unknown commands and short frames: closed without an answer.
        let a = sim.answer(&hx("00000006 00000001"), jan2());
        assert!(a.closes() && a.frames.is_empty());
        let a = sim.answer(b"\0\0", jan2());
        assert!(a.closes() && a.frames.is_empty());
    }
}

// ---------------------------------------------------------------- names, text

#[test]
fn names_parse_and_print() {
    for t in Template::ALL {
        assert_eq!(t.to_string().parse::<Template>().unwrap(), t);
        assert_eq!(t.protocol().template(), t);
    }
    let e = "SMPP".parse::<Template>().unwrap_err();
    assert!(
        e.to_string()
            .contains("expected smpp, cmpp3, cmpp2 or iso8583")
    );
    let a: Account = "901234:se:cret".parse().unwrap();
    assert_eq!((a.id.as_str(), a.secret.as_str()), ("901234", "se:cret"));
    assert!(!format!("{a:?}").contains("se:cret"));
    assert!("x".parse::<Account>().is_err());
    for b in ["trx", "tx", "rx"] {
        assert_eq!(b.parse::<BindMode>().unwrap().to_string(), b);
    }
}

#[test]
fn text_pdu_json() {
    let p = smpp();
    let t = p.decode_text(&submit_sm_frame()).unwrap();
    let json = t.to_json();
    assert!(
        json.starts_with(r#"{"command":"submit_sm","seq":2,"#),
        "{json}"
    );
    assert!(
        json.contains(r#""short_message":"hello\\x20world""#),
        "{json}"
    );
}

// ---------------------------------------------------------------- properties

mod props {
    use super::*;
    use crate::protocol::schema::{Field, Kind, Schema};
    use crate::protocol::value::escape_bytes;
    use proptest::prelude::*;

    fn bytes_value(max: usize, nul: bool) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<u8>(), 0..=max).prop_map(move |mut v| {
            if !nul {
                v.retain(|&b| b != 0);
            }
            if v.len() % 3 == 0 {
                format!("hex:{}", crate::text::to_hex(&v))
            } else {
                escape_bytes(&v)
            }
        })
    }

    fn field_value(f: &Field) -> Option<BoxedStrategy<(String, String)>> {
        let name = f.name.to_owned();
        let s: BoxedStrategy<String> = match f.kind {
            Kind::U8 | Kind::Registered => any::<u8>().prop_map(|n| n.to_string()).boxed(),
            Kind::Coding => prop_oneof![Just(8u8), any::<u8>()]
                .prop_map(|n| n.to_string())
                .boxed(),
            Kind::U32 => any::<u32>().prop_map(|n| format!("{n:#x}")).boxed(),
            Kind::U64 => any::<u64>().prop_map(|n| n.to_string()).boxed(),
            Kind::CStr(max) => bytes_value(max - 1, false).boxed(),
            Kind::Octets(n) | Kind::Repeat(n) => bytes_value(n, true).boxed(),
            Kind::Hex(n) => proptest::collection::vec(any::<u8>(), n)
                .prop_map(|v| crate::text::to_hex(&v))
                .boxed(),
            Kind::Msg | Kind::Content(_) => bytes_value(255, true).boxed(),
            Kind::Count | Kind::Tlvs => return None,
        };
        Some(s.prop_map(move |v| (name.clone(), v)).boxed())
    }

    fn tlvs() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((any::<u16>(), bytes_value(40, true)), 0..3).prop_map(|v| {
            v.into_iter()
                .map(|(tag, val)| (format!("tlv.0x{tag:04x}"), val))
                .collect()
        })
    }

    /// A text PDU for one command of a table: each field present or not.
    fn pdu(commands: &'static [(u32, &'static str, Schema)]) -> BoxedStrategy<TextPdu> {
        (0..commands.len())
            .prop_flat_map(move |i| {
                let (_, name, schema) = commands[i];
                let mut parts: Vec<BoxedStrategy<Vec<(String, String)>>> = vec![
                    any::<u32>()
                        .prop_map(|s| vec![("seq".to_owned(), s.to_string())])
                        .boxed(),
                ];
                for f in schema.fields {
                    if matches!(f.kind, Kind::Tlvs) {
                        parts.push(tlvs().boxed());
                    } else if let Some(s) = field_value(f) {
                        let n = if matches!(f.kind, Kind::Repeat(_)) {
                            3
                        } else {
                            1
                        };
                        parts.push(proptest::collection::vec(s, 0..=n).boxed());
                    }
                    if let Kind::Content(report) = f.kind {
                        for r in report {
                            let s = field_value(r).unwrap();
                            parts.push(proptest::collection::vec(s, 0..=1).boxed());
                        }
                    }
                }
                parts.prop_map(move |ps| TextPdu {
                    command: name.to_owned(),
                    fields: ps.into_iter().flatten().collect(),
                })
            })
            .boxed()
    }

    /// encode -> decode -> encode gives the same bytes, and decode of those the same text.
    fn round_trip(p: &dyn Protocol, pdu: &TextPdu) {
        let Ok(frame) = p.encode_text(&pdu.to_string(), 1) else {
            // Random field mixes can be invalid (both a report and a message): fine.
            return;
        };
        let text = p.decode_text(&frame).unwrap();
        let again = p.encode_text(&text.to_string(), 7).unwrap();
        assert_eq!(again, frame, "{text}");
        assert_eq!(p.decode_text(&again).unwrap(), text);
        assert_eq!(text.to_string().parse::<TextPdu>().unwrap(), text);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn smpp_text_round_trip(pdu in pdu(smpp::COMMANDS)) {
            round_trip(&*smpp(), &pdu);
        }

        #[test]
        fn cmpp3_text_round_trip(pdu in pdu(cmpp::V3_COMMANDS)) {
            round_trip(&*cmpp3(), &pdu);
        }

        #[test]
        fn cmpp2_text_round_trip(pdu in pdu(cmpp::V2_COMMANDS)) {
            round_trip(&*cmpp2(), &pdu);
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
            for t in Template::ALL {
                let p = t.protocol();
                if let Ok(text) = p.decode_text(&frame) {
                    let again = p.encode_text(&text.to_string(), 0).unwrap();
                    prop_assert_eq!(&again[..], &frame[..]);
                }
                let _ = p.client_answer(&frame);
                let _ = p.heartbeat().classify(&frame);
                let mut sim = p.simulator(&config(None, true));
                let _ = sim.answer(&frame, jan2());
            }
        }

        #[test]
        fn arbitrary_lines_never_panic(line in "\\PC{0,80}") {
            for t in Template::ALL {
                let _ = t.protocol().encode_text(&line, 1);
            }
        }
    }

    #[test]
    fn arbitrary_submits_with_a_valid_header_round_trip() {
        // Random bodies behind real command ids reach the field decoders, not just the
        // header check.
        let mut runner = proptest::test_runner::TestRunner::default();
        let ids = [0x04u32, 0x05, 0x09, 0x80000004, 0x80000009];
        runner
            .run(
                &(0..ids.len(), proptest::collection::vec(any::<u8>(), 0..200)),
                |(i, body)| {
                    for t in Template::ALL {
                        let p = t.protocol();
                        let mut frame = ids[i].to_be_bytes().to_vec();
                        if t == Template::Smpp {
                            frame.extend([0; 4]);
                        }
                        frame.extend([0, 0, 0, 1]);
                        frame.extend(&body);
                        if let Ok(text) = p.decode_text(&frame) {
                            let again = p.encode_text(&text.to_string(), 0).unwrap();
                            prop_assert_eq!(&again[..], &frame[..]);
                        }
                    }
                    Ok(())
                },
            )
            .unwrap();
    }
}

#[test]
fn smpp_frames_built_by_smpplib_decode() {
    // smpplib 2.2.4: make_pdu('submit_sm', source_addr='10086',
    // destination_addr='13800138000', short_message=b'hello', registered_delivery=1),
    // make_pdu('bind_transceiver', system_id='test', password='secret') and
    // make_pdu('deliver_sm_resp'), generate()[4:] in hex. (smpplib's parse_pdu reads the
    // simulator's bind_transceiver_resp, submit_sm_resp, receipt deliver_sm and
    // generic_nack back with the fields the tests above expect.)
    let p = smpp();
    check(
        &*p,
        &hx(
            "00000004000000000000000100000031303038360000003133383030313338303030\
             000000000000010000000568656c6c6f",
        ),
        "submit_sm seq=1 source_addr=10086 destination_addr=13800138000 \
         registered_delivery=1 short_message=hello",
    );
    check(
        &*p,
        &hx("0000000900000000000000017465737400736563726574000034000000"),
        "bind_transceiver seq=1 system_id=test password=secret",
    );
    check(
        &*p,
        &hx("80000005000000000000000100"),
        "deliver_sm_resp seq=1 status=ESME_ROK message_id=",
    );
}
