//! The calls the double serves, over its file store, with matchbox v0.11.0's semantics
//! (matchbox/rpc/{groups,profiles,select,errors}.go over matchbox/server/server.go).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use super::pb::rpcpb::{groups_server::Groups, profiles_server::Profiles, select_server::Select};
use super::pb::{serverpb as msg, storagepb};
use crate::store::{Group, NetBoot, Profile, Store};

pub struct Api {
    store: Store,
}

impl Api {
    pub fn new(data_path: PathBuf) -> Api {
        Api {
            store: Store::new(data_path),
        }
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// errors.go's `grpcError`: any store error is UNKNOWN with its text.
fn unknown(e: String) -> Status {
    Status::unknown(e)
}

fn no_matching_group() -> Status {
    Status::not_found("matchbox: No matching Group")
}

fn no_matching_profile() -> Status {
    Status::not_found("matchbox: No matching Profile")
}

#[tonic::async_trait]
impl Groups for Api {
    async fn group_get(&self, req: Request<msg::GroupGetRequest>) -> Answer<msg::GroupGetResponse> {
        let group = self.store.group_get(&req.get_ref().id).map_err(unknown)?;
        Ok(Response::new(msg::GroupGetResponse {
            group: Some(group_pb(group)),
        }))
    }

    async fn group_list(&self, _: Request<msg::GroupListRequest>) -> Answer<msg::GroupListResponse> {
        let groups = self.store.group_list().map_err(unknown)?;
        Ok(Response::new(msg::GroupListResponse {
            groups: groups.into_iter().map(group_pb).collect(),
        }))
    }
}

#[tonic::async_trait]
impl Profiles for Api {
    async fn profile_get(&self, req: Request<msg::ProfileGetRequest>) -> Answer<msg::ProfileGetResponse> {
        let profile = self.store.profile_get(&req.get_ref().id).map_err(unknown)?;
        Ok(Response::new(msg::ProfileGetResponse {
            profile: Some(profile_pb(profile)),
        }))
    }

    async fn profile_list(&self, _: Request<msg::ProfileListRequest>) -> Answer<msg::ProfileListResponse> {
        let profiles = self.store.profile_list().map_err(unknown)?;
        Ok(Response::new(msg::ProfileListResponse {
            profiles: profiles.into_iter().map(profile_pb).collect(),
        }))
    }
}

#[tonic::async_trait]
impl Select for Api {
    /// Unlike the HTTP handlers, the labels are taken as given (no MAC normalising).
    async fn select_group(&self, req: Request<msg::SelectGroupRequest>) -> Answer<msg::SelectGroupResponse> {
        let labels: BTreeMap<String, String> = req.into_inner().labels.into_iter().collect();
        match self.store.select(&labels).map_err(unknown)? {
            Some(group) => Ok(Response::new(msg::SelectGroupResponse {
                group: Some(group_pb(group)),
            })),
            None => Err(no_matching_group()),
        }
    }

    /// server.go: any failure to select a group is "No matching Group", a group whose profile
    /// does not load is "No matching Profile".
    async fn select_profile(&self, req: Request<msg::SelectProfileRequest>) -> Answer<msg::SelectProfileResponse> {
        let labels: BTreeMap<String, String> = req.into_inner().labels.into_iter().collect();
        let group = self
            .store
            .select(&labels)
            .ok()
            .flatten()
            .ok_or_else(no_matching_group)?;
        let profile = self
            .store
            .profile_get(&group.profile)
            .map_err(|_| no_matching_profile())?;
        Ok(Response::new(msg::SelectProfileResponse {
            profile: Some(profile_pb(profile)),
        }))
    }
}

fn group_pb(g: Group) -> storagepb::Group {
    storagepb::Group {
        metadata: g
            .metadata
            .map(|m| go_json(&Value::Object(m)).into_bytes())
            .unwrap_or_default(),
        id: g.id,
        name: g.name,
        profile: g.profile,
        selector: g.selector.into_iter().collect(),
    }
}

fn profile_pb(p: Profile) -> storagepb::Profile {
    storagepb::Profile {
        id: p.id,
        name: p.name,
        ignition_id: p.ignition_id,
        cloud_id: p.cloud_id,
        generic_id: p.generic_id,
        boot: p
            .boot
            .map(|NetBoot { kernel, initrd, args }| storagepb::NetBoot { kernel, initrd, args }),
    }
}

/// A group's metadata as `RichGroup.ToGroup` stores it (storagepb/group.go): Go's
/// `json.Marshal` of the map — keys sorted at every level, no spaces, and `<`, `>`, `&`,
/// U+2028, U+2029 escaped as `\u00XX` (they only occur inside strings, so a plain replace is
/// exact).
fn go_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                Value::Object(
                    keys.into_iter()
                        .map(|k| (k.clone(), sorted(&m[k])))
                        .collect::<Map<_, _>>(),
                )
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            v => v.clone(),
        }
    }
    serde_json::to_string(&sorted(v))
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_gos_json_marshal() {
        let v: Value = serde_json::from_str(r#"{"b":{"z":1,"a":[true,null]},"a":"<x & y>"}"#).unwrap();
        assert_eq!(
            go_json(&v),
            r#"{"a":"\u003cx \u0026 y\u003e","b":{"a":[true,null],"z":1}}"#
        );
    }
}
