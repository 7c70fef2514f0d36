//! The loopback listener's tests: real sockets on 127.0.0.1, a second Unix user where one is
//! needed.

/// The second Unix user of the ownership tests, shared with the crate's integration tests.
#[cfg(target_os = "linux")]
#[path = "../../../tests/common/other_user.rs"]
mod other_user;
#[cfg(target_os = "linux")]
use other_user::OtherUser;

use super::*;

fn head(extra: &str) -> String {
    format!("POST /callback HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}")
}

#[test]
fn the_saml_post_head_is_checked_before_the_body_is_read() {
    let form = "Content-Type: application/x-www-form-urlencoded; charset=utf-8";
    assert_eq!(
        check_saml_post_head(&head(&format!("{form}\r\nContent-Length: 42"))),
        Ok(42)
    );
    assert_eq!(
        check_saml_post_head("GET /callback HTTP/1.1\r\n"),
        Err(SamlPostError::NotPost)
    );
    assert_eq!(
        check_saml_post_head("POST /other HTTP/1.1\r\n"),
        Err(SamlPostError::WrongPath("/other".into()))
    );
    assert_eq!(
        check_saml_post_head(&head("Content-Type: text/xml\r\nContent-Length: 1")),
        Err(SamlPostError::NotForm)
    );
    assert_eq!(
        check_saml_post_head(&head(form)),
        Err(SamlPostError::NoLength)
    );
    assert_eq!(
        check_saml_post_head(&head(&format!(
            "{form}\r\nContent-Length: {}",
            MAX_SAML_POST_BYTES + 1
        ))),
        Err(SamlPostError::TooLarge(MAX_SAML_POST_BYTES))
    );
}

#[test]
fn the_saml_post_body_needs_the_relay_state_and_a_response() {
    let got = read_saml_post(b"SAMLResponse=PHg%2B&RelayState=rs-1", "rs-1").expect("post");
    assert_eq!(got.expose(), "PHg+");
    assert_eq!(
        read_saml_post(b"SAMLResponse=PHg%2B&RelayState=old", "rs-1").err(),
        Some(SamlPostError::RelayStateMismatch)
    );
    assert_eq!(
        read_saml_post(b"SAMLResponse=PHg%2B", "rs-1").err(),
        Some(SamlPostError::RelayStateMismatch)
    );
    assert_eq!(
        read_saml_post(b"RelayState=rs-1&SAMLResponse=", "rs-1").err(),
        Some(SamlPostError::NoResponse)
    );
    assert_eq!(
        read_saml_post(&vec![b'a'; MAX_SAML_POST_BYTES + 1], "rs-1").err(),
        Some(SamlPostError::TooLarge(MAX_SAML_POST_BYTES))
    );
}

async fn post(port: u16, content_type: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!(
        "POST /callback HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("head");
    // An oversized body is refused from its head: the listener may close before it is sent.
    let _ = s.write_all(body).await;
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn hostile_posts_get_error_pages_and_the_real_one_still_signs_in() {
    let listener = LoopbackListener::bind().await.expect("bind");
    let port = Url::parse(listener.redirect_uri())
        .expect("uri")
        .port()
        .expect("port");
    let wait = tokio::spawn(async move {
        listener
            .wait_for_saml_response("rs-1", Duration::from_secs(20))
            .await
    });
    let form = "application/x-www-form-urlencoded";
    let huge = vec![b'A'; MAX_SAML_POST_BYTES + 10];
    assert!(post(port, form, &huge).await.starts_with("HTTP/1.1 413"));
    assert!(post(port, "text/plain", b"SAMLResponse=x&RelayState=rs-1")
        .await
        .starts_with("HTTP/1.1 400"));
    let stale = post(port, form, b"SAMLResponse=x&RelayState=other").await;
    assert!(stale.starts_with("HTTP/1.1 400"), "{stale}");
    assert!(stale.contains("out of date"), "{stale}");
    assert!(post(port, form, b"RelayState=rs-1")
        .await
        .contains("carries no SAMLResponse"));
    assert!(post(port, form, b"SAMLResponse=PHg%2B&RelayState=rs-1")
        .await
        .starts_with("HTTP/1.1 200"));
    let got = wait.await.expect("join").expect("response");
    assert_eq!(got.expose(), "PHg+");
}

/// A GET to the listener from this process; the whole answer.
async fn get(port: u16, target: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let head = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    s.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn port_of(listener: &LoopbackListener) -> u16 {
    listener.local.port()
}

/// The listener waits, in the background, for the redirect of the sign-in whose state is `s-1`.
fn await_code_for_s1(
    listener: LoopbackListener,
    seconds: u64,
) -> tokio::task::JoinHandle<Result<Secret, SignInError>> {
    tokio::spawn(async move {
        let expected = ExpectedRedirect {
            state: "s-1".into(),
            issuer: None,
            known_issuer: None,
        };
        listener
            .wait_for_code(&expected, Duration::from_secs(seconds))
            .await
    })
}

#[tokio::test]
async fn the_start_page_redirects_to_the_sign_in_url_and_the_sign_in_goes_on() {
    let mut listener = LoopbackListener::bind().await.expect("bind");
    let port = port_of(&listener);
    let target =
        Url::parse("https://idp.example/authorize?state=s-1&code_challenge=c").expect("url");
    let start = listener.start_page(&target).expect("start page");
    // What goes on the browser's command line says nothing of the sign-in.
    assert_eq!(start.host_str(), Some("127.0.0.1"));
    assert!(start.path().starts_with("/start/"), "{start}");
    assert!(
        start.query().is_none() && !start.as_str().contains("s-1"),
        "{start}"
    );
    let wait = await_code_for_s1(listener, 20);
    let answer = get(port, start.path()).await;
    assert!(answer.starts_with("HTTP/1.1 302"), "{answer}");
    assert!(
        answer.contains(&format!("Location: {target}\r\n")),
        "{answer}"
    );
    // A guessed start page is not this one.
    let guessed = get(port, "/start/guess").await;
    assert!(guessed.starts_with("HTTP/1.1 404"), "{guessed}");
    assert!(!wait.is_finished());
    let answer = get(port, "/callback?code=mine&state=s-1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(wait.await.expect("join").expect("code").expose(), "mine");
}

#[tokio::test]
async fn a_silent_connection_does_not_delay_the_genuine_redirect() {
    let listener = LoopbackListener::bind().await.expect("bind");
    let port = port_of(&listener);
    // Connected first and never says a word: served one at a time, it would hold the
    // listener for its whole 5-s allowance, longer than this sign-in's 4 s.
    let silent = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let wait = await_code_for_s1(listener, 4);
    let answer = get(port, "/callback?code=mine&state=s-1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let code = wait.await.expect("join").expect("the genuine redirect");
    assert_eq!(code.expose(), "mine");
    drop(silent);
}

#[tokio::test]
async fn connections_past_the_cap_are_answered_busy_and_the_genuine_one_still_gets_in() {
    let listener = LoopbackListener::bind().await.expect("bind");
    let port = port_of(&listener);
    let mut silent = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        silent.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    let wait = await_code_for_s1(listener, 20);
    // Every slot is held: one more is turned away at once, not queued behind them.
    let busy = get(port, "/callback?code=mine&state=s-1").await;
    assert!(busy.starts_with("HTTP/1.1 503"), "{busy}");
    // A slot frees when its client goes away; the genuine redirect then gets in.
    drop(silent.pop());
    let answer = loop {
        let answer = get(port, "/callback?code=mine&state=s-1").await;
        if !answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(wait.await.expect("join").expect("code").expose(), "mine");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_redirect_from_another_users_process_is_refused_and_the_genuine_one_signs_in() {
    let Some(other) = OtherUser::create("loopback") else {
        return;
    };
    let mut listener = LoopbackListener::bind().await.expect("bind");
    let port = port_of(&listener);
    let start = listener
        .start_page(&Url::parse("https://idp.example/authorize?state=s-1").expect("url"))
        .expect("start page");
    let wait = await_code_for_s1(listener, 20);
    // The other user knows the state (it is in the browser's argv) and has a code of their
    // own account: a perfect-looking redirect, from the wrong socket owner.
    let url = format!("http://127.0.0.1:{port}/callback?code=attacker&state=s-1");
    let start = start.to_string();
    let (status, start_status) = tokio::task::spawn_blocking(move || {
        let status = other.curl(&url);
        let start_status = other.curl(&start);
        drop(other);
        (status, start_status)
    })
    .await
    .expect("join");
    assert_eq!(status, "403", "another user's redirect was not refused");
    assert_eq!(start_status, "403", "another user read the start page");
    assert!(!wait.is_finished(), "the refusal ended the sign-in");
    let answer = get(port, "/callback?code=mine&state=s-1").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let code = wait.await.expect("join").expect("the genuine redirect");
    assert_eq!(code.expose(), "mine");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_saml_post_from_another_users_process_is_refused() {
    let Some(other) = OtherUser::create("loopback") else {
        return;
    };
    let listener = LoopbackListener::bind().await.expect("bind");
    let port = port_of(&listener);
    let wait = tokio::spawn(async move {
        listener
            .wait_for_saml_response("rs-1", Duration::from_secs(20))
            .await
    });
    let url = format!("http://127.0.0.1:{port}/callback");
    let status = tokio::task::spawn_blocking(move || {
        let status = other.curl_with(&["--data", "SAMLResponse=QUJD&RelayState=rs-1"], &url);
        drop(other);
        status
    })
    .await
    .expect("join");
    assert_eq!(status, "403", "another user's SAML post was not refused");
    let answer = post(
        port,
        "application/x-www-form-urlencoded",
        b"SAMLResponse=PHg%2B&RelayState=rs-1",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        wait.await.expect("join").expect("response").expose(),
        "PHg+"
    );
}
