use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::TcpListener;

use proptest::prelude::*;

use super::*;
use crate::attest::protocol::{Bytes, NodeId, NonceRequest, NonceResponse};

fn parse(bytes: &[u8], cap: u64) -> io::Result<(u16, Vec<u8>)> {
    let response = read_response(Cursor::new(bytes.to_vec()), cap)?;
    let status = response.head.status;
    Ok((status, response.body.into_bytes()?))
}

fn parse_error(bytes: &[u8], cap: u64) -> ParseError {
    let err = parse(bytes, cap).unwrap_err();
    err.get_ref()
        .and_then(|e| e.downcast_ref::<ParseError>())
        .cloned()
        .unwrap_or_else(|| panic!("not a parse error: {err}"))
}

#[test]
fn framings() {
    let length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloEXTRA";
    assert_eq!(parse(length, 100).unwrap(), (200, b"hello".to_vec()));
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n";
    assert_eq!(parse(chunked, 100).unwrap(), (200, b"hello world".to_vec()));
    let close = b"HTTP/1.0 404 Not Found\r\n\r\nnot found\n";
    assert_eq!(parse(close, 100).unwrap(), (404, b"not found\n".to_vec()));
    let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(parse(interim, 100).unwrap(), (204, Vec::new()));
    // Bare LF line ends are read too.
    let lf = b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok";
    assert_eq!(parse(lf, 100).unwrap(), (200, b"ok".to_vec()));
    // The same length twice is one length.
    let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok";
    assert_eq!(parse(twice, 100).unwrap(), (200, b"ok".to_vec()));
}

#[test]
fn malformed_answers_are_named() {
    let cases: [(&[u8], ParseError); 9] = [
        (
            b"HTTP/2 200 OK\r\n\r\n",
            ParseError::StatusLine("HTTP/2 200 OK".into()),
        ),
        (
            b"HTTP/1.1 20 OK\r\n\r\n",
            ParseError::StatusLine("HTTP/1.1 20 OK".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            ParseError::Header("no colon".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            ParseError::ContentLength("3".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            ParseError::ContentLength("-1".into()),
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ParseError::TransferEncoding("gzip, chunked".into()),
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Le", ParseError::HeadTruncated),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            ParseError::BodyTruncated {
                got: 5,
                expected: 10,
            },
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            ParseError::ChunkSize("zz".into()),
        ),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            parse_error(bytes, 100),
            want,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    let chunk_end = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n";
    assert_eq!(parse_error(chunk_end, 100), ParseError::ChunkEnd);
}

#[test]
fn bodies_are_capped_whatever_the_framing() {
    let length = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
    assert_eq!(parse_error(length, 10), ParseError::BodyTooLong { cap: 10 });
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n";
    assert_eq!(
        parse_error(chunked, 10),
        ParseError::BodyTooLong { cap: 10 }
    );
    let close = b"HTTP/1.1 200 OK\r\n\r\nhello world";
    assert_eq!(parse_error(close, 10), ParseError::BodyTooLong { cap: 10 });
    let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 600).flatten());
    assert_eq!(parse_error(&huge, 10), ParseError::HeadTooLong);
}

#[test]
fn server_urls() {
    let url = ServerUrl::parse("http://198.18.0.1:8080").unwrap();
    assert_eq!(
        (url.host.as_str(), url.port, url.prefix.as_str()),
        ("198.18.0.1", 8080, "")
    );
    assert_eq!(
        url.url("/images/x/1/manifest.json"),
        "http://198.18.0.1:8080/images/x/1/manifest.json"
    );
    let url = ServerUrl::parse("http://boot.example/pxe/").unwrap();
    assert_eq!((url.port, url.prefix.as_str()), (80, "/pxe"));
    let url = ServerUrl::parse("http://[2001:db8::1]:81").unwrap();
    assert_eq!(url.url("/x"), "http://[2001:db8::1]:81/x");
    for bad in [
        "https://198.18.0.1",
        "198.18.0.1:8080",
        "http://",
        "http://:80",
        "http://h:0",
        "http://h:99999",
        "http://u@h",
        "http://h/a?b",
        "http://h/a b",
    ] {
        assert!(ServerUrl::parse(bad).is_err(), "{bad}");
    }
}

/// A server on loopback answering each connection with the next canned
/// answer; returns the requests it saw (head and body) when joined.
fn fake_server(answers: Vec<Vec<u8>>) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            request.push_str(&String::from_utf8(body).unwrap());
            seen.push(request);
            let mut stream = stream;
            stream.write_all(&answer).unwrap();
        }
        seen
    });
    (url, handle)
}

fn answer(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

fn nonce_request() -> Request {
    Request::Nonce(NonceRequest {
        node: NodeId::new("52:54:00:12:00:31").unwrap(),
    })
}

#[test]
fn attest_client_over_a_fake_server() {
    let nonce = Response::Nonce(NonceResponse {
        nonce: Bytes(vec![7; 32]),
        expires_in: 30,
    });
    let refusal = Response::Verdict(Verdict::Refused {
        code: "nonce-replayed".into(),
        reason: "the nonce was used".into(),
    });
    let answers = vec![
        answer("200 OK", &protocol::encode(&nonce)),
        answer("403 Forbidden", &protocol::encode(&refusal)),
        answer("404 Not Found", b"not found\n"),
        answer("405 Method Not Allowed", b"only GET and HEAD\n"),
        answer("500 Internal Server Error", b"store down"),
        answer("200 OK", b"{\"type\":\"nonce\",\"surprise\":1}"),
    ];
    let (url, server) = fake_server(answers);
    let mut client = HttpClient::new(&url, Duration::from_secs(10)).unwrap();
    assert_eq!(client.call(&nonce_request()).unwrap(), nonce);
    assert_eq!(client.call(&nonce_request()).unwrap(), refusal);
    let enroll = Request::Activate(crate::attest::protocol::ActivateRequest {
        node: NodeId::new("n1").unwrap(),
        session: Bytes(vec![1, 2]),
        secret: Bytes(vec![3]),
    });
    match client.call(&enroll).unwrap() {
        Response::Verdict(Verdict::Refused { code, reason }) => {
            assert_eq!(code, NOT_ATTESTING);
            assert!(
                reason.contains("POST") && reason.contains("/attest/activate"),
                "{reason}"
            );
        }
        other => panic!("404 must refuse, got {other:?}"),
    }
    match client.call(&enroll).unwrap() {
        Response::Verdict(Verdict::Refused { code, reason }) => {
            assert_eq!(code, NOT_ATTESTING);
            assert!(reason.contains("answered 405"), "{reason}");
        }
        other => panic!("405 must refuse, got {other:?}"),
    }
    let err = client.call(&nonce_request()).unwrap_err();
    assert!(err.to_string().contains("HTTP 500: store down"), "{err}");
    assert!(
        client.call(&nonce_request()).is_err(),
        "unknown key accepted"
    );
    let seen = server.join().unwrap();
    assert!(
        seen[0].starts_with("GET /attest/nonce?node=52:54:00:12:00:31 HTTP/1.1\r\n"),
        "{}",
        seen[0]
    );
    assert!(seen[0].contains("Connection: close\r\n"), "{}", seen[0]);
    assert!(
        seen[2].starts_with("POST /attest/activate HTTP/1.1\r\n"),
        "{}",
        seen[2]
    );
    assert!(
        seen[2].contains("Content-Type: application/json\r\n"),
        "{}",
        seen[2]
    );
    assert!(
        seen[2].ends_with(&String::from_utf8(enroll.body()).unwrap()),
        "{}",
        seen[2]
    );
}

#[test]
fn get_requires_200_and_no_redirect_is_followed() {
    let answers = vec![
        answer("200 OK", b"data"),
        answer("302 Found", b"elsewhere"),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
    ];
    let (url, server) = fake_server(answers);
    let client = HttpClient::new(&format!("{url}/pre/"), Duration::from_secs(10)).unwrap();
    assert_eq!(client.get_bytes("/a", 100).unwrap(), b"data");
    let err = client.get_bytes("/b", 100).unwrap_err();
    assert_eq!(err.status(), Some(302), "{err}");
    assert!(err.to_string().contains("/pre/b"), "{err}");
    assert_eq!(client.get_bytes("/c", 100).unwrap(), b"abc");
    let seen = server.join().unwrap();
    assert!(
        seen[1].starts_with("GET /pre/b HTTP/1.1\r\n"),
        "{}",
        seen[1]
    );
}

#[test]
fn connection_refused_is_an_error_naming_the_host() {
    // A port just released: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let client =
        HttpClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5)).unwrap();
    let err = client.get_bytes("/x", 10).unwrap_err();
    assert!(matches!(err, HttpError::Connect { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

fn chunked(body: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let mut rest = body;
    for cut in cuts {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at((*cut).clamp(1, rest.len()));
        out.extend(format!("{:x}\r\n", chunk.len()).bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    if !rest.is_empty() {
        out.extend(format!("{:X}\r\n", rest.len()).bytes());
        out.extend_from_slice(rest);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

proptest! {
    #[test]
    fn the_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), cap in 0u64..300) {
        let _ = parse(&bytes, cap);
        let mut framed = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = parse(&framed, cap);
    }

    #[test]
    fn chunked_bodies_come_back_whole(
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(1usize..300, 0..10),
    ) {
        let (status, got) = parse(&chunked(&body, &cuts), 4096).unwrap();
        prop_assert_eq!(status, 200);
        prop_assert_eq!(got, body);
    }
}
