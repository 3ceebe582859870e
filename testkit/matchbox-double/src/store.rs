//! matchbox's file store and selection rules (storage/filestore.go, storage/fs.go,
//! server/server.go, storagepb/group.go), re-read from disk on every request.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::labels::normalize_mac;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub selector: BTreeMap<String, String>,
    /// JSON object, or None
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetBoot {
    pub kernel: String,
    pub initrd: Vec<String>,
    pub args: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Profile {
    pub id: String,
    pub name: String,
    pub ignition_id: String,
    pub cloud_id: String,
    pub generic_id: String,
    /// None when the profile has no (or a null) `boot`
    pub boot: Option<NetBoot>,
}

pub struct Store {
    root: PathBuf,
}

/// Go's encoding/json matches object keys to struct fields case-insensitively.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name)
        .or_else(|| obj.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Result<String, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!(
            "json: cannot unmarshal {} into Go struct field .{name} of type string",
            json_kind(v)
        )),
    }
}

fn string_list(obj: &Map<String, Value>, name: &str) -> Result<Vec<String>, String> {
    match field(obj, name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Null => Ok(String::new()),
                v => Err(format!(
                    "json: cannot unmarshal {} into Go struct field .{name} of type string",
                    json_kind(v)
                )),
            })
            .collect(),
        Some(v) => Err(format!(
            "json: cannot unmarshal {} into Go struct field .{name} of type []string",
            json_kind(v)
        )),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn object(data: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(data) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(v) => Err(format!("json: cannot unmarshal {} into Go value", json_kind(&v))),
        Err(e) => Err(e.to_string()),
    }
}

/// storagepb.ParseGroup: RichGroup JSON -> Group, then Normalize (mac selectors).
pub fn parse_group(data: &[u8]) -> Result<Group, String> {
    let obj = object(data)?;
    let mut g = Group {
        id: string_field(&obj, "id")?,
        name: string_field(&obj, "name")?,
        profile: string_field(&obj, "profile")?,
        ..Default::default()
    };
    match field(&obj, "selector") {
        None | Some(Value::Null) => {}
        Some(Value::Object(sel)) => {
            for (k, v) in sel {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    v => {
                        return Err(format!(
                            "json: cannot unmarshal {} into Go struct field RichGroup.selector of type string",
                            json_kind(v)
                        ))
                    }
                };
                g.selector.insert(k.clone(), v);
            }
        }
        Some(v) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field RichGroup.selector of type map[string]string",
                json_kind(v)
            ))
        }
    }
    match field(&obj, "metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => g.metadata = Some(m.clone()),
        Some(v) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field RichGroup.metadata of type map[string]interface {{}}",
                json_kind(v)
            ))
        }
    }
    // Normalize: a selector whose key is "mac" (any case) must be a valid MAC
    for (k, v) in g.selector.iter_mut() {
        if k.eq_ignore_ascii_case("mac") {
            match normalize_mac(v) {
                Some(m) => *v = m,
                None => return Err(format!("address {v}: invalid MAC address")),
            }
        }
    }
    Ok(g)
}

/// Profile JSON (protobuf JSON names) with AssertValid (id required).
pub fn parse_profile(data: &[u8]) -> Result<Profile, String> {
    let obj = object(data)?;
    let boot = match field(&obj, "boot") {
        None | Some(Value::Null) => None,
        Some(Value::Object(b)) => Some(NetBoot {
            kernel: string_field(b, "kernel")?,
            initrd: string_list(b, "initrd")?,
            args: string_list(b, "args")?,
        }),
        Some(v) => {
            return Err(format!(
                "json: cannot unmarshal {} into Go struct field Profile.boot of type storagepb.NetBoot",
                json_kind(v)
            ))
        }
    };
    let p = Profile {
        id: string_field(&obj, "id")?,
        name: string_field(&obj, "name")?,
        ignition_id: string_field(&obj, "ignition_id")?,
        cloud_id: string_field(&obj, "cloud_id")?,
        generic_id: string_field(&obj, "generic_id")?,
        boot,
    };
    if p.id.is_empty() {
        return Err("Id is required".to_string());
    }
    Ok(p)
}

impl Group {
    /// All selector pairs must equal labels (keys are case-sensitive).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector
            .iter()
            .all(|(k, v)| labels.get(k).map(|l| l == v).unwrap_or(false))
    }

    fn selector_string(&self) -> String {
        let mut reqs: Vec<String> = self.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        reqs.sort();
        reqs.join(",")
    }
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    /// storage.Dir.sanitize: join `name` (cleaned as an absolute path) under the root.
    fn sanitize(&self, name: &str) -> Result<PathBuf, String> {
        if name.contains('\0') {
            return Err("invalid character in file path".into());
        }
        let cleaned = clean_path(&format!("/{name}"));
        let root = if self.root.as_os_str().is_empty() {
            Path::new(".")
        } else {
            self.root.as_path()
        };
        Ok(root.join(cleaned.trim_start_matches('/')))
    }

    fn read_file(&self, name: &str) -> Result<Vec<u8>, String> {
        let p = self.sanitize(name)?;
        std::fs::read(&p).map_err(|e| format!("open {}: {}", p.display(), go_err(&e)))
    }

    /// GroupGet: `groups/<id>.json`.
    pub fn group_get(&self, id: &str) -> Result<Group, String> {
        self.read_file(&format!("groups/{id}.json"))
            .and_then(|d| parse_group(&d))
    }

    /// GroupList: every entry of groups/ (sorted by name), read as `<stem>.json`;
    /// unparseable ones are logged and skipped.
    pub fn group_list(&self) -> Result<Vec<Group>, String> {
        self.list("groups", "Group", |s, stem| s.group_get(stem))
    }

    /// ProfileList: the same walk over profiles/.
    pub fn profile_list(&self) -> Result<Vec<Profile>, String> {
        self.list("profiles", "Profile", |s, stem| s.profile_get(stem))
    }

    /// filestore.go's List walk: os.ReadDir order (by name), each entry's name without its
    /// extension read back through Get; what fails to load is logged at info and skipped.
    fn list<T>(
        &self,
        dir: &str,
        what: &str,
        get: impl Fn(&Store, &str) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        let path = self.sanitize(dir)?;
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .map_err(|e| format!("open {}: {}", path.display(), go_err(&e)))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut items = Vec::new();
        for n in names {
            let stem = match n.rfind('.') {
                Some(i) => &n[..i],
                None => &n,
            };
            match get(self, stem) {
                Ok(item) => items.push(item),
                Err(e) => crate::log::info(&format!("{what} {stem:?}: {e}")),
            }
        }
        Ok(items)
    }

    pub fn profile_get(&self, id: &str) -> Result<Profile, String> {
        let data = self.read_file(&format!("profiles/{id}.json"))?;
        parse_profile(&data)
    }

    pub fn generic_get(&self, name: &str) -> Result<String, String> {
        self.read_file(&format!("generic/{name}"))
            .map(|d| String::from_utf8_lossy(&d).into_owned())
    }

    pub fn ignition_get(&self, name: &str) -> Result<String, String> {
        self.read_file(&format!("ignition/{name}"))
            .map(|d| String::from_utf8_lossy(&d).into_owned())
    }

    /// SelectGroup: groups ordered by most selectors first, ties broken by the
    /// reverse order of their sorted "k=v,..." strings (identical selectors keep
    /// file-name order, as Go's insertion sort does for small lists); first match wins.
    pub fn select_group(&self, labels: &BTreeMap<String, String>) -> Option<Group> {
        self.select(labels).ok().flatten()
    }

    /// SelectGroup, telling a store that cannot be listed (`Err`) from no match (`None`).
    pub fn select(&self, labels: &BTreeMap<String, String>) -> Result<Option<Group>, String> {
        let mut groups = self.group_list()?;
        groups.sort_by(|a, b| {
            b.selector
                .len()
                .cmp(&a.selector.len())
                .then_with(|| b.selector_string().cmp(&a.selector_string()))
        });
        Ok(groups.into_iter().find(|g| g.matches(labels)))
    }

    /// SelectProfile: the selected group's profile, which must load and have an id.
    pub fn select_profile(&self, labels: &BTreeMap<String, String>) -> Option<(Group, Profile)> {
        let g = self.select_group(labels)?;
        let p = self.profile_get(&g.profile).ok()?;
        Some((g, p))
    }
}

fn go_err(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_ascii_lowercase(),
                None => s,
            }
        }
    }
}

/// Go's path.Clean.
pub fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if out.last().map(|s| *s != "..").unwrap_or(false) {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if rooted {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".into()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean() {
        assert_eq!(clean_path("/a/../../b/./c//"), "/b/c");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("a/../.."), "..");
    }

    #[test]
    fn group_parse() {
        let g = parse_group(
            br#"{"ID":"a","Profile":"p","selector":{"MAC":"52-54-00-AB-CD-EF","arch":"arm64"},"metadata":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(g.id, "a");
        assert_eq!(g.profile, "p");
        assert_eq!(g.selector["MAC"], "52:54:00:ab:cd:ef");
        assert!(parse_group(br#"{"id":"a","selector":{"mac":"nope"}}"#).is_err());
        assert!(parse_group(br#"{"id":"a","selector":{"n":1}}"#).is_err());
        assert!(parse_group(b"[]").is_err());
    }

    #[test]
    fn profile_parse() {
        let p =
            parse_profile(br#"{"id":"p","boot":{"kernel":"k","initrd":["i"],"args":["a","b"]},"generic_id":"g.yaml"}"#)
                .unwrap();
        assert_eq!(p.boot.as_ref().unwrap().args, vec!["a", "b"]);
        assert_eq!(p.generic_id, "g.yaml");
        assert!(parse_profile(br#"{"name":"no id"}"#).is_err());
        assert!(parse_profile(br#"{"id":"p"}"#).unwrap().boot.is_none());
    }
}
