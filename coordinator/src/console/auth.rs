//! Who may read the console: holders of a Control API client token, presented as a bearer
//! header (scripts) or as the sign-in cookie (browsers). The cookie holds the token itself,
//! `HttpOnly` (no script reads it), `SameSite=Strict` (no other site sends it) and scoped to
//! `/ui`; `Secure` when the port serves TLS. Rotating tokens signs browsers out.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::html::escape;
use super::state::Console;

/// The sign-in cookie's name.
const COOKIE: &str = "bk_console_token";

/// Lets a request through when tokens are off or it presents a valid one; otherwise answers
/// 401 with the sign-in form.
pub(super) async fn require_token(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    match presented(request.headers()) {
        _ if !console.tokens.is_enabled() => next.run(request).await,
        Some(token) if console.tokens.accepts(&token) => next.run(request).await,
        Some(_) => {
            sign_in(StatusCode::UNAUTHORIZED, "That token is not accepted any more: sign in again.")
        }
        None => sign_in(
            StatusCode::UNAUTHORIZED,
            "Sign in with a client token (the one bkctl uses as BK_TOKEN).",
        ),
    }
}

/// The token in `Authorization: Bearer …`, else in the sign-in cookie.
fn presented(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    bearer.or_else(|| {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| {
                pair.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string)
            })
            .map(|encoded| {
                url::form_urlencoded::parse(format!("t={encoded}").as_bytes())
                    .next()
                    .map(|(_, token)| token.into_owned())
                    .unwrap_or_default()
            })
    })
}

/// `GET /ui/login`.
pub(super) async fn login_form(State(console): State<Arc<Console>>) -> Response {
    if !console.tokens.is_enabled() {
        return redirect("/ui", None);
    }
    sign_in(StatusCode::OK, "Sign in with a client token (the one bkctl uses as BK_TOKEN).")
}

/// `POST /ui/login` with a form field `token`: sets the cookie and goes to the overview.
pub(super) async fn login(State(console): State<Arc<Console>>, body: Bytes) -> Response {
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "token")
        .map(|(_, token)| token.trim().to_string())
        .unwrap_or_default();
    if !console.tokens.is_enabled() {
        return redirect("/ui", None);
    }
    if token.is_empty() || !console.tokens.accepts(&token) {
        return sign_in(StatusCode::UNAUTHORIZED, "That token is not accepted: use a client token from the coordinator's client_tokens_file.");
    }
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let secure = if console.secure_cookie { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={encoded}; Path=/ui; HttpOnly; SameSite=Strict{secure}");
    redirect("/ui", Some(cookie))
}

/// `POST /ui/logout`: forgets the cookie.
pub(super) async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0");
    redirect("/ui/login", Some(cookie))
}

fn redirect(to: &'static str, cookie: Option<String>) -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if let Some(value) = cookie.and_then(|cookie| HeaderValue::from_str(&cookie).ok()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn sign_in(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in · bk</title><link rel=\"stylesheet\" href=\"/ui/assets/console.css\"></head>\
         <body><main id=\"content\" class=\"login\"><h1>bk console</h1><p id=\"login-message\">{}</p>\
         <form method=\"post\" action=\"/ui/login\"><label for=\"token\">Client token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <p><button type=\"submit\">Sign in</button></p></form></main></body></html>\n",
        escape(message)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Headers on every console answer: no inline script or foreign origin, no framing, nothing
/// cached (pages hold live state), no referrer leaking job ids.
pub(super) async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let policy = "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_the_token_is_read_from_the_bearer_header_first_then_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("other=1; bk_console_token=a%3Bb%20c"),
        );
        assert_eq!(presented(&headers).as_deref(), Some("a;b c"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer from-header"));
        assert_eq!(presented(&headers).as_deref(), Some("from-header"));
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
