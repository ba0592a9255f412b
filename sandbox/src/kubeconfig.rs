//! The kubeconfig that points kube-rs and kubectl at the sandbox: plain HTTP, no credentials
//! (the sandbox does no authentication), context `sandbox` with namespace `default`.

pub fn render(server: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sandbox
  cluster:
    server: {server}
contexts:
- name: sandbox
  context:
    cluster: sandbox
    namespace: default
    user: sandbox
current-context: sandbox
preferences: {{}}
users:
- name: sandbox
  user: {{}}
"
    )
}
