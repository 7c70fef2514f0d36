//! A scripted browser for tests and the demo: it opens an authorization URL with a plain HTTP
//! client, picks the login form of the requested user by simple string matching, submits it and
//! follows the redirect to the app's loopback listener. It understands only the testbed IdP's own
//! pages; it keeps no cookies and runs no scripts. A SAML login answers with a page whose form
//! submits itself (HTTP-POST binding): the browser submits that form to the app, as a real browser
//! would on load. Given the app's loopback start page instead of the sign-in URL, it follows that
//! page's redirect first, as a browser would.

use std::time::Duration;

use anyhow::{bail, Context};
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::redirect::Policy;
use url::Url;

/// What the browser saw at the end of a login: the redirect it followed and the app's answer.
#[derive(Clone, Debug)]
pub struct BrowserVisit {
    /// The URL the IdP redirected to (the app's loopback redirect URI with `code`, `state`…).
    pub redirect_url: String,
    /// HTTP status of the app's answer.
    pub status: u16,
    /// Body of the app's answer.
    pub body: String,
    /// The fields posted to the app (SAML HTTP-POST binding: `SAMLResponse`, `RelayState`);
    /// empty after a redirect.
    pub posted: Vec<(String, String)>,
}

/// A form on a page: absolute action URL and the fields to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageForm {
    action: String,
    fields: Vec<(String, String)>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    client_trusting(None)
}

fn client_trusting(ca_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .redirect(Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(
            reqwest::Certificate::from_pem(pem.as_bytes()).context("the CA to trust")?,
        );
    }
    builder
        .build()
        .context("building the scripted browser's HTTP client")
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The value of attribute `name` in an HTML start tag (double-quoted values only).
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// Start tags `<kind …>` within `html`.
fn tags<'a>(html: &'a str, kind: &str) -> Vec<&'a str> {
    let open = format!("<{kind}");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i..];
        let end = after.find('>').map(|e| e + 1).unwrap_or(after.len());
        out.push(&after[..end]);
        rest = &after[end..];
    }
    out
}

/// Finds the form that signs in (or approves as) `user`: matched by `data-user`, `data-email`, or
/// a submit button's value.
fn find_user_form(page: &str, page_url: &Url, user: &str) -> anyhow::Result<PageForm> {
    for chunk in page.split("<form").skip(1) {
        let chunk = format!("<form{}", chunk.split("</form>").next().unwrap_or_default());
        let Some(form_tag) = tags(&chunk, "form").into_iter().next() else {
            continue;
        };
        let mut fields = Vec::new();
        let mut matched = attr(form_tag, "data-user").as_deref() == Some(user)
            || attr(form_tag, "data-email").is_some_and(|e| e.eq_ignore_ascii_case(user));
        for input in tags(&chunk, "input") {
            if let Some(name) = attr(input, "name") {
                fields.push((name, attr(input, "value").unwrap_or_default()));
            }
        }
        let mut button_field = None;
        for button in tags(&chunk, "button") {
            if let (Some(name), Some(value)) = (attr(button, "name"), attr(button, "value")) {
                matched |= value == user;
                button_field = Some((name, value));
            }
        }
        if !matched {
            continue;
        }
        fields.extend(button_field);
        let action = attr(form_tag, "action").unwrap_or_default();
        let action = page_url
            .join(&action)
            .with_context(|| format!("bad form action {action}"))?;
        return Ok(PageForm {
            action: action.to_string(),
            fields,
        });
    }
    bail!("no sign-in form for user {user} on the page at {page_url}")
}

/// The self-submitting form of a SAML HTTP-POST binding page (`data-saml-post`), if any.
fn find_auto_post(page: &str, page_url: &Url) -> anyhow::Result<Option<PageForm>> {
    let Some(form_tag) = tags(page, "form")
        .into_iter()
        .find(|t| attr(t, "data-saml-post").is_some())
    else {
        return Ok(None);
    };
    let fields = tags(page, "input")
        .into_iter()
        .filter_map(|input| {
            Some((
                attr(input, "name")?,
                attr(input, "value").unwrap_or_default(),
            ))
        })
        .collect();
    let action = attr(form_tag, "action").unwrap_or_default();
    let action = page_url
        .join(&action)
        .with_context(|| format!("bad form action {action}"))?;
    Ok(Some(PageForm {
        action: action.to_string(),
        fields,
    }))
}

/// On an IdP page that lists accounts (`page`, the answer to `refused`, e.g. the authorization
/// request): picks `user`'s form and submits it; the IdP's answer.
async fn pick_user(
    client: &reqwest::Client,
    page: reqwest::Response,
    user: &str,
    refused: &str,
    what: &str,
) -> anyhow::Result<reqwest::Response> {
    let page_url = page.url().clone();
    let status = page.status();
    let html = page
        .text()
        .await
        .with_context(|| format!("reading the {what}"))?;
    if !status.is_success() {
        bail!("the IdP refused the {refused} ({status}): {html}");
    }
    let form = find_user_form(&html, &page_url, user)?;
    submit(client, &form).await
}

async fn submit(client: &reqwest::Client, form: &PageForm) -> anyhow::Result<reqwest::Response> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.fields.iter())
        .finish();
    client
        .post(&form.action)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .with_context(|| format!("posting the form to {}", form.action))
}

fn location(resp: &reqwest::Response) -> anyhow::Result<String> {
    let base = resp.url().clone();
    let raw = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("redirect without Location")?;
    Ok(base.join(raw)?.to_string())
}

async fn visit_redirect(
    client: &reqwest::Client,
    redirect_url: String,
) -> anyhow::Result<BrowserVisit> {
    let resp = client
        .get(&redirect_url)
        .send()
        .await
        .with_context(|| format!("following the redirect to {redirect_url}"))?;
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap_or_default();
    Ok(BrowserVisit {
        redirect_url,
        status,
        body,
        posted: Vec::new(),
    })
}

/// Opens `authorize_url`, signs in as `user` (sub, email or name), and follows the IdP's redirect
/// to the app. If the IdP redirects straight away (an error response), that redirect is followed.
pub async fn complete_login(authorize_url: &str, user: &str) -> anyhow::Result<BrowserVisit> {
    login_with(client()?, authorize_url, user).await
}

/// [`complete_login`] against an IdP served over HTTPS with a certificate from `ca_pem`.
pub async fn complete_login_trusting(
    authorize_url: &str,
    user: &str,
    ca_pem: &str,
) -> anyhow::Result<BrowserVisit> {
    login_with(client_trusting(Some(ca_pem))?, authorize_url, user).await
}

/// An app's loopback start page (`http://127.0.0.1:<port>/start/…`, which Lanyard gives the
/// browser so the sign-in URL stays off command lines) is followed to the sign-in URL it redirects
/// to; any other URL is the sign-in URL itself.
async fn sign_in_url(client: &reqwest::Client, opened: &str) -> anyhow::Result<String> {
    let Ok(url) = Url::parse(opened) else {
        return Ok(opened.to_owned());
    };
    let loopback = matches!(
        url.host_str(),
        Some("127.0.0.1") | Some("localhost") | Some("[::1]")
    );
    if !(loopback && url.path().starts_with("/start/")) {
        return Ok(opened.to_owned());
    }
    let resp = client
        .get(opened)
        .send()
        .await
        .with_context(|| format!("opening the app's start page {opened}"))?;
    if !resp.status().is_redirection() {
        bail!("the app's start page answered {}", resp.status());
    }
    location(&resp)
}

/// Opens the sign-in the app started (through its start page, if it gave one): the IdP's first
/// answer.
async fn open_sign_in(
    client: &reqwest::Client,
    authorize_url: &str,
) -> anyhow::Result<reqwest::Response> {
    let authorize_url = &sign_in_url(client, authorize_url).await?;
    client
        .get(authorize_url)
        .send()
        .await
        .with_context(|| format!("opening {authorize_url}"))
}

async fn login_with(
    client: reqwest::Client,
    authorize_url: &str,
    user: &str,
) -> anyhow::Result<BrowserVisit> {
    let page = open_sign_in(&client, authorize_url).await?;
    if page.status().is_redirection() {
        let target = location(&page)?;
        return visit_redirect(&client, target).await;
    }
    let resp = pick_user(&client, page, user, "authorization request", "login page").await?;
    if resp.status().is_success() {
        let page_url = resp.url().clone();
        let html = resp.text().await.unwrap_or_default();
        if let Some(post) = find_auto_post(&html, &page_url)? {
            let answer = submit(&client, &post).await?;
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            return Ok(BrowserVisit {
                redirect_url: post.action,
                status,
                body,
                posted: post.fields,
            });
        }
        bail!("login was not redirected (200): {html}");
    }
    if !resp.status().is_redirection() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        bail!("login was not redirected ({status}): {body}");
    }
    let target = location(&resp)?;
    visit_redirect(&client, target).await
}

/// Opens `authorize_url` and signs in as `user` like [`complete_login`], but stops at the IdP's
/// redirect: returns the URL it redirects to (the app's redirect URI with `code` and `state`)
/// without visiting it. Tests play with it someone who delivers that redirect another way.
pub async fn login_redirect(authorize_url: &str, user: &str) -> anyhow::Result<String> {
    let client = client()?;
    let page = open_sign_in(&client, authorize_url).await?;
    let resp = pick_user(&client, page, user, "authorization request", "login page").await?;
    if !resp.status().is_redirection() {
        let status = resp.status();
        bail!("login was not redirected ({status})");
    }
    location(&resp)
}

/// Opens a device-flow verification URL (with `user_code`) and approves it as `user`.
pub async fn complete_device(verification_url: &str, user: &str) -> anyhow::Result<()> {
    let client = client()?;
    let page = client
        .get(verification_url)
        .send()
        .await
        .with_context(|| format!("opening {verification_url}"))?;
    let resp = pick_user(&client, page, user, "device page", "device page").await?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() || !body.contains("approved") {
        bail!("device approval failed ({status}): {body}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_form_of_the_user() {
        let page = r#"<form method="post" action="/t/login" data-user="alice" data-email="alice@example.com"><input type="hidden" name="request" value="r1"><button type="submit" name="user" value="alice">A</button></form>
<form method="post" action="/t/login" data-user="bob" data-email="bob@example.com"><input type="hidden" name="request" value="r1"><button type="submit" name="user" value="bob">B</button></form>"#;
        let base = Url::parse("http://127.0.0.1:1/t/authorize?x=1").expect("url");
        let form = find_user_form(page, &base, "BOB@example.com").expect("form");
        assert_eq!(form.action, "http://127.0.0.1:1/t/login");
        assert_eq!(
            form.fields,
            vec![
                ("request".to_string(), "r1".to_string()),
                ("user".to_string(), "bob".to_string())
            ]
        );
        assert!(find_user_form(page, &base, "carol").is_err());
    }
}
