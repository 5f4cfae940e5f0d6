//! A checker for the Kubernetes Pod Security Standards `restricted` profile (which includes
//! `baseline`), as the `pod-security.kubernetes.io/enforce: restricted` admission applies it.
//!
//! Pure and reusable: [`check_restricted`] lists every violation in a Pod spec, so the builder
//! Job and the Helm chart's Deployment can be tested against the same rules. It checks only
//! the Pod spec: metadata annotations (deprecated AppArmor and seccomp annotations) and
//! Windows Pods (`spec.os.name: windows`, where some checks do not apply) are out of scope.

use k8s_openapi::api::core::v1::{Container, PodSpec, SecurityContext};

/// Volume types the `restricted` profile allows.
pub const ALLOWED_VOLUME_TYPES: [&str; 8] = [
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// Sysctls the `baseline` profile allows.
pub const SAFE_SYSCTLS: [&str; 10] = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types the `baseline` profile allows.
const ALLOWED_SELINUX_TYPES: [&str; 4] = [
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Every violation of the `restricted` profile in `spec`, one sentence each naming the field;
/// empty when the Pod is admitted.
pub fn check_restricted(spec: &PodSpec) -> Vec<String> {
    let mut problems = Vec::new();
    let pod = spec.security_context.clone().unwrap_or_default();

    for (field, value) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if value == Some(true) {
            problems.push(format!("spec.{field} must not be true"));
        }
    }

    for volume in spec.volumes.iter().flatten() {
        let value = serde_json::to_value(volume).unwrap_or_default();
        let kinds: Vec<String> = value
            .as_object()
            .map(|o| o.keys().filter(|k| k.as_str() != "name").cloned().collect())
            .unwrap_or_default();
        for kind in kinds {
            if !ALLOWED_VOLUME_TYPES.contains(&kind.as_str()) {
                problems.push(format!(
                    "volume {} uses the disallowed type {kind}",
                    volume.name
                ));
            }
        }
    }

    if let Some(options) = &pod.se_linux_options {
        check_selinux("spec.securityContext", options, &mut problems);
    }
    for sysctl in pod.sysctls.iter().flatten() {
        if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
            problems.push(format!(
                "spec.securityContext.sysctls sets the unsafe sysctl {}",
                sysctl.name
            ));
        }
    }
    if pod.run_as_user == Some(0) {
        problems.push("spec.securityContext.runAsUser must not be 0".to_string());
    }
    if pod.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
        problems
            .push("spec.securityContext.windowsOptions.hostProcess must not be true".to_string());
    }
    if let Some(profile) = &pod.app_armor_profile
        && profile.type_ == "Unconfined"
    {
        problems.push("spec.securityContext.appArmorProfile must not be Unconfined".to_string());
    }
    let pod_seccomp = pod.seccomp_profile.as_ref().map(|p| p.type_.as_str());
    if let Some(kind) = pod_seccomp
        && !matches!(kind, "RuntimeDefault" | "Localhost")
    {
        problems.push(format!("spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost, not {kind}"));
    }

    let groups = [
        ("spec.containers", spec.containers.as_slice()),
        (
            "spec.initContainers",
            spec.init_containers.as_deref().unwrap_or_default(),
        ),
    ];
    for (group, containers) in groups {
        for container in containers {
            check_container(
                group,
                container,
                pod.run_as_non_root,
                pod_seccomp,
                &mut problems,
            );
        }
    }
    for container in spec.ephemeral_containers.iter().flatten() {
        let as_container = Container {
            name: container.name.clone(),
            security_context: container.security_context.clone(),
            ports: container.ports.clone(),
            ..Container::default()
        };
        check_container(
            "spec.ephemeralContainers",
            &as_container,
            pod.run_as_non_root,
            pod_seccomp,
            &mut problems,
        );
    }
    problems
}

fn check_selinux(
    path: &str,
    options: &k8s_openapi::api::core::v1::SELinuxOptions,
    problems: &mut Vec<String>,
) {
    if let Some(kind) = options.type_.as_deref()
        && !kind.is_empty()
        && !ALLOWED_SELINUX_TYPES.contains(&kind)
    {
        problems.push(format!("{path}.seLinuxOptions.type must not be {kind}"));
    }
    if options.user.as_deref().is_some_and(|u| !u.is_empty()) {
        problems.push(format!("{path}.seLinuxOptions.user must not be set"));
    }
    if options.role.as_deref().is_some_and(|r| !r.is_empty()) {
        problems.push(format!("{path}.seLinuxOptions.role must not be set"));
    }
}

fn check_container(
    group: &str,
    container: &Container,
    pod_non_root: Option<bool>,
    pod_seccomp: Option<&str>,
    problems: &mut Vec<String>,
) {
    let path = format!("{group}[{}]", container.name);
    let context: SecurityContext = container.security_context.clone().unwrap_or_default();
    let security = format!("{path}.securityContext");

    if context.privileged == Some(true) {
        problems.push(format!("{security}.privileged must not be true"));
    }
    if context.allow_privilege_escalation != Some(false) {
        problems.push(format!("{security}.allowPrivilegeEscalation must be false"));
    }
    let capabilities = context.capabilities.clone().unwrap_or_default();
    if !capabilities.drop.iter().flatten().any(|c| c == "ALL") {
        problems.push(format!("{security}.capabilities.drop must include ALL"));
    }
    for added in capabilities.add.iter().flatten() {
        if added != "NET_BIND_SERVICE" {
            problems.push(format!("{security}.capabilities.add must not add {added}"));
        }
    }
    match context.run_as_non_root {
        Some(false) => problems.push(format!("{security}.runAsNonRoot must not be false")),
        None if pod_non_root != Some(true) => problems.push(format!(
            "{security}.runAsNonRoot must be true (or spec.securityContext.runAsNonRoot)"
        )),
        _ => {}
    }
    if context.run_as_user == Some(0) {
        problems.push(format!("{security}.runAsUser must not be 0"));
    }
    match context.seccomp_profile.as_ref().map(|p| p.type_.as_str()) {
        Some("RuntimeDefault" | "Localhost") => {}
        Some(kind) => problems.push(format!(
            "{security}.seccompProfile.type must be RuntimeDefault or Localhost, not {kind}"
        )),
        None if !matches!(pod_seccomp, Some("RuntimeDefault" | "Localhost")) => {
            problems.push(format!(
                "{security}.seccompProfile must be set (or spec.securityContext.seccompProfile)"
            ))
        }
        None => {}
    }
    if let Some(options) = &context.se_linux_options {
        check_selinux(&security, options, problems);
    }
    if context
        .proc_mount
        .as_deref()
        .is_some_and(|m| m != "Default")
    {
        problems.push(format!("{security}.procMount must be Default"));
    }
    if context
        .windows_options
        .as_ref()
        .and_then(|w| w.host_process)
        == Some(true)
    {
        problems.push(format!(
            "{security}.windowsOptions.hostProcess must not be true"
        ));
    }
    if let Some(profile) = &context.app_armor_profile
        && profile.type_ == "Unconfined"
    {
        problems.push(format!("{security}.appArmorProfile must not be Unconfined"));
    }
    for port in container.ports.iter().flatten() {
        if port.host_port.is_some_and(|p| p != 0) {
            problems.push(format!(
                "{path}.ports[{}].hostPort must not be set",
                port.container_port
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Capabilities, ContainerPort, HostPathVolumeSource, PodSecurityContext, SELinuxOptions,
        SeccompProfile, Sysctl, Volume,
    };

    fn compliant() -> PodSpec {
        PodSpec {
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..PodSecurityContext::default()
            }),
            containers: vec![Container {
                name: "app".into(),
                security_context: Some(SecurityContext {
                    allow_privilege_escalation: Some(false),
                    capabilities: Some(Capabilities {
                        add: Some(vec!["NET_BIND_SERVICE".into()]),
                        drop: Some(vec!["ALL".into()]),
                    }),
                    ..SecurityContext::default()
                }),
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    fn container_context(spec: &mut PodSpec) -> &mut SecurityContext {
        spec.containers[0]
            .security_context
            .get_or_insert_with(SecurityContext::default)
    }

    fn check(name: &str, change: impl FnOnce(&mut PodSpec), expected: &str) {
        let mut spec = compliant();
        change(&mut spec);
        let problems = check_restricted(&spec);
        if expected.is_empty() {
            assert_eq!(problems, Vec::<String>::new(), "{name}");
        } else {
            assert!(
                problems.iter().any(|p| p.contains(expected)),
                "{name}: {problems:?}"
            );
        }
    }

    #[test]
    fn restricted_rules() {
        check("compliant", |_| {}, "");
        check(
            "host network",
            |s| s.host_network = Some(true),
            "spec.hostNetwork",
        );
        check("host pid", |s| s.host_pid = Some(true), "spec.hostPID");
        check("host ipc", |s| s.host_ipc = Some(true), "spec.hostIPC");
        check(
            "hostPath",
            |s| {
                s.volumes = Some(vec![Volume {
                    name: "root".into(),
                    host_path: Some(HostPathVolumeSource {
                        path: "/".into(),
                        type_: None,
                    }),
                    ..Volume::default()
                }])
            },
            "volume root uses the disallowed type hostPath",
        );
        check(
            "privileged",
            |s| container_context(s).privileged = Some(true),
            "privileged must not be true",
        );
        check(
            "escalation",
            |s| container_context(s).allow_privilege_escalation = None,
            "allowPrivilegeEscalation must be false",
        );
        check(
            "drop",
            |s| container_context(s).capabilities = None,
            "capabilities.drop must include ALL",
        );
        check(
            "add",
            |s| {
                container_context(s).capabilities = Some(Capabilities {
                    add: Some(vec!["SYS_ADMIN".into()]),
                    drop: Some(vec!["ALL".into()]),
                })
            },
            "must not add SYS_ADMIN",
        );
        check(
            "non-root missing",
            |s| {
                s.security_context = Some(PodSecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..PodSecurityContext::default()
                })
            },
            "runAsNonRoot must be true",
        );
        check(
            "non-root false",
            |s| container_context(s).run_as_non_root = Some(false),
            "runAsNonRoot must not be false",
        );
        check(
            "container non-root suffices",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.run_as_non_root = None;
                }
                container_context(s).run_as_non_root = Some(true);
            },
            "",
        );
        check(
            "root uid",
            |s| container_context(s).run_as_user = Some(0),
            "runAsUser must not be 0",
        );
        check(
            "pod root uid",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.run_as_user = Some(0);
                }
            },
            "spec.securityContext.runAsUser must not be 0",
        );
        check(
            "seccomp missing",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.seccomp_profile = None;
                }
            },
            "seccompProfile must be set",
        );
        check(
            "seccomp unconfined",
            |s| {
                container_context(s).seccomp_profile = Some(SeccompProfile {
                    type_: "Unconfined".into(),
                    localhost_profile: None,
                })
            },
            "not Unconfined",
        );
        check(
            "pod seccomp unconfined",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.seccomp_profile = Some(SeccompProfile {
                        type_: "Unconfined".into(),
                        localhost_profile: None,
                    });
                }
            },
            "spec.securityContext.seccompProfile.type",
        );
        check(
            "selinux user",
            |s| {
                container_context(s).se_linux_options = Some(SELinuxOptions {
                    user: Some("root".into()),
                    ..SELinuxOptions::default()
                })
            },
            "seLinuxOptions.user",
        );
        check(
            "selinux type",
            |s| {
                container_context(s).se_linux_options = Some(SELinuxOptions {
                    type_: Some("spc_t".into()),
                    ..SELinuxOptions::default()
                })
            },
            "seLinuxOptions.type must not be spc_t",
        );
        check(
            "selinux allowed type",
            |s| {
                container_context(s).se_linux_options = Some(SELinuxOptions {
                    type_: Some("container_t".into()),
                    ..SELinuxOptions::default()
                })
            },
            "",
        );
        check(
            "proc mount",
            |s| container_context(s).proc_mount = Some("Unmasked".into()),
            "procMount",
        );
        check(
            "host port",
            |s| {
                s.containers[0].ports = Some(vec![ContainerPort {
                    container_port: 80,
                    host_port: Some(80),
                    ..ContainerPort::default()
                }])
            },
            "hostPort must not be set",
        );
        check(
            "sysctl",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.sysctls = Some(vec![Sysctl {
                        name: "kernel.msgmax".into(),
                        value: "1".into(),
                    }]);
                }
            },
            "unsafe sysctl kernel.msgmax",
        );
        check(
            "safe sysctl",
            |s| {
                if let Some(pod) = s.security_context.as_mut() {
                    pod.sysctls = Some(vec![Sysctl {
                        name: "net.ipv4.tcp_syncookies".into(),
                        value: "1".into(),
                    }]);
                }
            },
            "",
        );
        check(
            "init container",
            |s| {
                s.init_containers = Some(vec![Container {
                    name: "init".into(),
                    ..Container::default()
                }]);
            },
            "spec.initContainers[init].securityContext.allowPrivilegeEscalation",
        );
    }
}
