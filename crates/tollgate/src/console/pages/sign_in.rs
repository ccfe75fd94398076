//! Signing in: an admin token once, or the configured OpenID provider.

use maud::{Markup, html};

/// The sign-in form. `pending` is the double-submit value also set as a cookie.
pub fn page(pending: &str, next: &str, message: Option<&str>, oidc_label: Option<&str>) -> Markup {
    html! {
        div.signin {
            @if let Some(message) = message {
                p.problem role="alert" { (message) }
            }
            @if let Some(label) = oidc_label {
                p { a.button.primary #oidc href="/console/oidc/start" { (label) } }
                p.muted { "or with an admin token:" }
            }
            form method="post" action="/console/sign-in" {
                input type="hidden" name="csrf" value=(pending);
                input type="hidden" name="next" value=(next);
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="off" required placeholder="tga-…" autofocus;
                button.primary type="submit" { "Sign in" }
            }
            p.muted {
                "Use the bootstrap token the gateway was started with ("
                code { "TOLLGATE_ADMIN_TOKEN" } "), or one an admin created for you under Admin tokens. "
                "It is asked for once: the console keeps a session, and every change you make is "
                "recorded in the audit log under your token."
            }
        }
    }
}

/// Shown right after sign-in: continues to `next` by itself.
pub fn continue_to(next: &str) -> Markup {
    html! {
        p { "You are signed in. " a #continue href=(next) data-auto { "Continue to the console" } }
    }
}
