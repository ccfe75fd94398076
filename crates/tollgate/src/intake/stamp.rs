//! Stamping: every resource of an export gets the key's team as `tollgate.team`,
//! `tollgate.team_id`, `tollgate.cost_centre` (when the team has one) and `tollgate.key_id`,
//! after every `tollgate.*` attribute the client set is removed — a key of one team cannot
//! write another team's labels, and nothing downstream has to trust a client's `tollgate.*`.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use tollgate_telemetry::names::attr;

use super::TeamStamp;
use super::decode::Export;

/// Stamps every resource of `export` with `team`; a missing resource is created.
pub fn stamp(export: &mut Export, team: &TeamStamp) {
    match export {
        Export::Traces(r) => r
            .resource_spans
            .iter_mut()
            .for_each(|rs| stamp_resource(rs.resource.get_or_insert_default(), team)),
        Export::Metrics(r) => r
            .resource_metrics
            .iter_mut()
            .for_each(|rm| stamp_resource(rm.resource.get_or_insert_default(), team)),
        Export::Logs(r) => r
            .resource_logs
            .iter_mut()
            .for_each(|rl| stamp_resource(rl.resource.get_or_insert_default(), team)),
    }
}

fn stamp_resource(resource: &mut Resource, team: &TeamStamp) {
    resource
        .attributes
        .retain(|kv| !kv.key.starts_with("tollgate."));
    let mut add = |key: &str, value: &str| {
        resource.attributes.push(KeyValue {
            key: key.to_string(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.to_string())),
            }),
            ..KeyValue::default()
        });
    };
    add(attr::TEAM, &team.team);
    add(attr::TEAM_ID, &team.team_id);
    if let Some(cost_centre) = &team.cost_centre {
        add(attr::COST_CENTRE, cost_centre);
    }
    add(attr::KEY_ID, &team.key_id);
}
