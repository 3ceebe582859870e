//! The test code of a tree: every function of `tests/it/**` and of `src/**`'s `#[cfg(test)]`
//! items (and the files those declare), with what the rules need to know of it.

use super::*;
use crate::support::rust_source::{is_test_attr, rust_files};

/// A function of the test code: its key (`name`, `Type::name`, or `.name` for a method), where
/// it is, whether it is a test, and its body.
pub(super) struct Function {
    pub(super) keys: Vec<String>,
    pub(super) file: String,
    pub(super) name: String,
    pub(super) is_test: bool,
    /// Whether it returns what a skip returns: nothing, an `Option` or a `bool`.
    pub(super) may_skip: bool,
    pub(super) body: Block,
}

/// `()`, `Option<..>`, `bool`: the results a helper hands back when it skipped.
pub(super) fn may_skip(output: &syn::ReturnType) -> bool {
    match output {
        syn::ReturnType::Default => true,
        syn::ReturnType::Type(_, ty) => match &**ty {
            syn::Type::Tuple(t) => t.elems.is_empty(),
            syn::Type::Path(p) => p
                .path
                .segments
                .last()
                .is_some_and(|s| s.ident == "Option" || s.ident == "bool"),
            _ => false,
        },
    }
}

pub(super) fn is_cfg_test(attrs: &[Attribute]) -> bool {
    attrs
        .iter()
        .any(|a| a.path().is_ident("cfg") && a.parse_args::<syn::Meta>().is_ok_and(|m| m.path().is_ident("test")))
}

pub(super) fn type_name(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

/// Collects the functions of `items`; `in_test` says whether the items are test code. Files
/// of `mod name;` declarations that are test code are queued in `files`.
pub(super) fn collect(
    root: &Path,
    items: &[Item],
    file: &Path,
    in_test: bool,
    out: &mut Vec<Function>,
    files: &mut VecDeque<(PathBuf, bool)>,
) {
    let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
    for item in items {
        match item {
            Item::Fn(f) => {
                if in_test || is_cfg_test(&f.attrs) || f.attrs.iter().any(is_test_attr) {
                    out.push(Function {
                        keys: vec![f.sig.ident.to_string()],
                        file: shown.clone(),
                        name: f.sig.ident.to_string(),
                        is_test: f.attrs.iter().any(is_test_attr),
                        may_skip: may_skip(&f.sig.output),
                        body: (*f.block).clone(),
                    });
                }
            }
            Item::Impl(i) if in_test || is_cfg_test(&i.attrs) => {
                let ty = type_name(&i.self_ty).unwrap_or_default();
                for member in &i.items {
                    if let ImplItem::Fn(f) = member {
                        let name = f.sig.ident.to_string();
                        let mut keys = vec![format!("{ty}::{name}")];
                        if f.sig.receiver().is_some() {
                            keys.push(format!(".{name}"));
                        }
                        out.push(Function {
                            keys,
                            file: shown.clone(),
                            name: format!("{ty}::{name}"),
                            is_test: false,
                            may_skip: may_skip(&f.sig.output),
                            body: f.block.clone(),
                        });
                    }
                }
            }
            Item::Mod(m) => {
                let test = in_test || is_cfg_test(&m.attrs);
                match &m.content {
                    Some((_, inner)) => collect(root, inner, file, test, out, files),
                    None if test => files.push_back((module_file(file, m), true)),
                    None => {}
                }
            }
            _ => {}
        }
    }
}

/// The file of `mod name;` declared in `file` (`#[path]` is relative to `file`'s folder).
pub(super) fn module_file(file: &Path, m: &syn::ItemMod) -> PathBuf {
    let name = m.ident.to_string();
    let path_attr = m
        .attrs
        .iter()
        .find(|a| a.path().is_ident("path"))
        .and_then(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        });
    if let Some(relative) = path_attr {
        return file.parent().unwrap_or(Path::new(".")).join(relative);
    }
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if matches!(stem, "mod" | "lib" | "main") {
        dir.to_path_buf()
    } else {
        dir.join(stem)
    };
    let flat = dir.join(format!("{name}.rs"));
    if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    }
}

/// Every function of the test code under `root`: `tests/it/**`, and `src/**`'s `#[cfg(test)]`
/// items and the files they declare.
pub(super) fn test_code(root: &Path) -> Vec<Function> {
    let mut queue: VecDeque<(PathBuf, bool)> = rust_files(&root.join("tests/it"))
        .into_iter()
        .map(|p| (p, true))
        .collect();
    queue.extend(rust_files(&root.join("src")).into_iter().map(|p| (p, false)));
    let mut seen: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut out = Vec::new();
    while let Some((path, in_test)) = queue.pop_front() {
        // A file already read as test code has nothing more to give; one read as library code
        // is read again once a `#[cfg(test)] mod` declares it.
        if seen.get(&path).is_some_and(|&was| was || !in_test) {
            continue;
        }
        seen.insert(path.clone(), in_test);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let file = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let in_test = in_test || is_cfg_test(&file.attrs);
        if in_test {
            out.retain(|f: &Function| Path::new(&f.file) != path.strip_prefix(root).unwrap_or(&path));
        }
        collect(root, &file.items, &path, in_test, &mut out, &mut queue);
    }
    out
}
