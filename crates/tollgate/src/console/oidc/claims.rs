//! From the verified ID token's claims to a [`Person`]: who (subject, a name to show) and
//! which role, by matching the configured claim's values against `[console.oidc] roles`.

use serde_json::Value;
use tollgate_core::config::OidcRole;
use tollgate_store::Role;

use super::{OidcError, Person};

/// The person the verified `claims` describe, with the role the first matching entry of
/// `roles` (in config order) gives.
pub(super) fn person(claims: &Value, claim: &str, roles: &[OidcRole]) -> Result<Person, OidcError> {
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_string)
    };
    let subject = text("sub").unwrap_or_default();
    let display = text("email")
        .or_else(|| text("preferred_username"))
        .or_else(|| text("name"))
        .unwrap_or_else(|| subject.clone());
    let (role, team) = role_for(claims, claim, roles)?;
    Ok(Person {
        subject,
        display,
        role,
        team,
    })
}

/// The claim's values (a string or an array of strings) matched against `roles`.
fn role_for(
    claims: &Value,
    claim: &str,
    roles: &[OidcRole],
) -> Result<(Role, Option<String>), OidcError> {
    let values: Vec<&str> = match claims.get(claim) {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if values.is_empty() {
        return Err(OidcError::MissingClaim {
            claim: claim.to_string(),
        });
    }
    let Some(entry) = roles.iter().find(|r| values.contains(&r.value.as_str())) else {
        return Err(OidcError::NoRole {
            claim: claim.to_string(),
            values: values.iter().map(|v| v.to_string()).collect(),
        });
    };
    let bad_role = || OidcError::BadRole {
        claim: claim.to_string(),
        value: entry.value.clone(),
        role: entry.role.clone(),
    };
    let role = Role::parse(&entry.role).ok_or_else(bad_role)?;
    let team = match role {
        Role::TeamAdmin => Some(entry.team.clone().ok_or_else(bad_role)?),
        Role::Admin | Role::Finance => None,
    };
    Ok((role, team))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(value: &str, role: &str, team: Option<&str>) -> OidcRole {
        OidcRole {
            value: value.into(),
            role: role.into(),
            team: team.map(Into::into),
        }
    }

    fn roles() -> Vec<OidcRole> {
        vec![
            role("platform-admins", "admin", None),
            role("search-admins", "team_admin", Some("search")),
            role("finance", "finance", None),
        ]
    }

    #[test]
    fn claim_may_be_a_string_or_an_array_and_the_first_role_in_config_order_wins() {
        let claims = json!({"sub": "u1", "groups": "search-admins"});
        assert_eq!(
            role_for(&claims, "groups", &roles()).unwrap(),
            (Role::TeamAdmin, Some("search".to_string()))
        );
        // Both finance and platform-admins match: platform-admins comes first in the config.
        let claims = json!({"groups": ["finance", "interns", 7, "platform-admins"]});
        assert_eq!(
            role_for(&claims, "groups", &roles()).unwrap(),
            (Role::Admin, None)
        );
        let claims = json!({"roles": ["finance"]});
        assert_eq!(
            role_for(&claims, "roles", &roles()).unwrap(),
            (Role::Finance, None)
        );
    }

    #[test]
    fn no_matching_claim_value_names_the_values_and_the_fix() {
        let claims = json!({"groups": ["interns", "everyone"]});
        let error = role_for(&claims, "groups", &roles()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "Your groups (interns, everyone) map to no tollgate role; ask an admin to add one \
             of them to [console.oidc] roles."
        );
        for claims in [json!({}), json!({"groups": []}), json!({"groups": 3})] {
            let error = role_for(&claims, "groups", &roles()).unwrap_err();
            assert!(
                matches!(&error, OidcError::MissingClaim { claim } if claim == "groups"),
                "{error}"
            );
        }
        let broken = [role("x", "team_admin", None)];
        let error = role_for(&json!({"groups": "x"}), "groups", &broken).unwrap_err();
        assert!(matches!(error, OidcError::BadRole { .. }), "{error}");
    }

    #[test]
    fn display_prefers_email_then_username_then_name_then_subject() {
        let roles = roles();
        let show = |claims: Value| person(&claims, "groups", &roles).unwrap().display;
        let g = "finance";
        assert_eq!(
            show(json!({"sub": "s", "email": "a@x", "preferred_username": "ada", "groups": g})),
            "a@x"
        );
        assert_eq!(
            show(
                json!({"sub": "s", "email": "", "preferred_username": "ada", "name": "Ada", "groups": g})
            ),
            "ada"
        );
        assert_eq!(show(json!({"sub": "s", "name": "Ada", "groups": g})), "Ada");
        assert_eq!(show(json!({"sub": "s", "groups": g})), "s");
    }
}
