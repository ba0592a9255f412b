{{/* Names. */}}
{{- define "cloudlb.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cloudlb.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cloudlb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cloudlb.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cloudlb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cloudlb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cloudlb.labels" -}}
{{ include "cloudlb.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "cloudlb.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "cloudlb.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace -}}
{{- end -}}

{{- define "cloudlb.hostNetwork" -}}
{{- if and (eq .Values.provider "local") .Values.local.hostNetwork -}}true{{- end -}}
{{- end -}}

{{/* Where /metrics, /healthz and /readyz listen: loopback in the node's network namespace. */}}
{{- define "cloudlb.metricsHost" -}}
{{- if .Values.metrics.bindAddress -}}
{{- .Values.metrics.bindAddress -}}
{{- else if include "cloudlb.hostNetwork" . -}}
127.0.0.1
{{- else -}}
0.0.0.0
{{- end -}}
{{- end -}}

{{/* Whether /metrics listens on loopback only (the hostNetwork default): nothing off the node
     can scrape it then. */}}
{{- define "cloudlb.metricsLoopback" -}}
{{- if has (include "cloudlb.metricsHost" .) (list "127.0.0.1" "::1" "localhost") -}}true{{- end -}}
{{- end -}}

{{/* The host part of a socket address: IPv6 in brackets. */}}
{{- define "cloudlb.metricsHostPort" -}}
{{- $h := include "cloudlb.metricsHost" . -}}
{{- if contains ":" $h -}}[{{ $h }}]{{- else -}}{{ $h }}{{- end -}}
{{- end -}}

{{- define "cloudlb.ingressEnabled" -}}
{{- if has "ingress" .Values.controllers -}}true{{- end -}}
{{- end -}}

{{/* `cloudlb run` arguments: only real flags, each from one value. */}}
{{- define "cloudlb.args" -}}
{{- $v := .Values -}}
{{- $providers := list "aws" "gcp" "local" "memory" -}}
{{- if not (has $v.provider $providers) -}}
{{- fail (printf "provider must be one of aws, gcp, local, memory (got %q)" $v.provider) -}}
{{- end -}}
{{- $controllers := list "service" "ingress" -}}
{{- if not $v.controllers -}}{{- fail "controllers must name at least one of service, ingress" -}}{{- end -}}
{{- range $v.controllers -}}
{{- if not (has . $controllers) -}}{{- fail (printf "controllers: unknown controller %q (service, ingress)" .) -}}{{- end -}}
{{- end -}}
{{- $a := list "run" (printf "--provider=%s" $v.provider) (printf "--cluster-name=%s" $v.clusterName) -}}
{{- $a = append $a (printf "--load-balancer-class=%s" $v.loadBalancerClass) -}}
{{- if $v.manageUnclassed -}}{{- $a = append $a "--manage-unclassed" -}}{{- end -}}
{{- $a = append $a (printf "--controllers=%s" (join "," $v.controllers)) -}}
{{- if $v.watchNamespace -}}{{- $a = append $a (printf "--namespace=%s" $v.watchNamespace) -}}{{- end -}}
{{- if include "cloudlb.ingressEnabled" . -}}
{{- $a = append $a (printf "--ingress-controller-name=%s" $v.ingress.controllerName) -}}
{{- with $v.ingress.httpPort -}}{{- $a = append $a (printf "--ingress-http-port=%d" (int64 .)) -}}{{- end -}}
{{- with $v.ingress.httpsPort -}}{{- $a = append $a (printf "--ingress-https-port=%d" (int64 .)) -}}{{- end -}}
{{- end -}}
{{- with $v.concurrency -}}{{- $a = append $a (printf "--concurrency=%d" (int64 .)) -}}{{- end -}}
{{- with $v.resyncPeriod -}}{{- $a = append $a (printf "--resync-period=%s" .) -}}{{- end -}}
{{- with $v.reconcileTimeout -}}{{- $a = append $a (printf "--reconcile-timeout=%s" .) -}}{{- end -}}
{{- with $v.kubeApiQps -}}{{- $a = append $a (printf "--kube-api-qps=%v" .) -}}{{- end -}}
{{- with $v.kubeApiBurst -}}{{- $a = append $a (printf "--kube-api-burst=%d" (int64 .)) -}}{{- end -}}
{{- $a = append $a (printf "--metrics-addr=%s:%d" (include "cloudlb.metricsHostPort" .) (int64 $v.metrics.port)) -}}
{{- $a = append $a (printf "--leader-elect=%t" $v.leaderElection.enabled) -}}
{{- if $v.leaderElection.enabled -}}
{{- $a = append $a (printf "--leader-election-namespace=%s" (include "cloudlb.leaseNamespace" .)) -}}
{{- $a = append $a (printf "--leader-election-id=%s" $v.leaderElection.leaseName) -}}
{{- end -}}
{{- $a = append $a (printf "--log-format=%s" $v.logFormat) -}}
{{- if eq $v.provider "aws" -}}
{{- $a = append $a (printf "--aws-region=%s" (required "aws.region is required with provider aws" $v.aws.region)) -}}
{{- $a = append $a (printf "--aws-vpc-id=%s" (required "aws.vpcId is required with provider aws" $v.aws.vpcId)) -}}
{{- with $v.aws.subnets -}}{{- $a = append $a (printf "--aws-subnets=%s" (join "," .)) -}}{{- end -}}
{{- with $v.aws.endpointUrl -}}{{- $a = append $a (printf "--aws-endpoint-url=%s" .) -}}{{- end -}}
{{- else if eq $v.provider "gcp" -}}
{{- $a = append $a (printf "--gcp-project=%s" (required "gcp.project is required with provider gcp" $v.gcp.project)) -}}
{{- $a = append $a (printf "--gcp-region=%s" (required "gcp.region is required with provider gcp" $v.gcp.region)) -}}
{{- $a = append $a (printf "--gcp-network=%s" (required "gcp.network is required with provider gcp" $v.gcp.network)) -}}
{{- with $v.gcp.subnetwork -}}{{- $a = append $a (printf "--gcp-subnetwork=%s" .) -}}{{- end -}}
{{- with $v.gcp.nodeTags -}}{{- $a = append $a (printf "--gcp-node-tags=%s" (join "," .)) -}}{{- end -}}
{{- with $v.gcp.endpointUrl -}}{{- $a = append $a (printf "--gcp-endpoint-url=%s" .) -}}{{- end -}}
{{- else if eq $v.provider "local" -}}
{{- with $v.local.addressPool -}}{{- $a = append $a (printf "--local-address-pool=%s" (join "," .)) -}}{{- end -}}
{{- with $v.local.drainTimeout -}}{{- $a = append $a (printf "--local-drain-timeout=%s" .) -}}{{- end -}}
{{- with $v.local.udpIdleTimeout -}}{{- $a = append $a (printf "--local-udp-idle-timeout=%s" .) -}}{{- end -}}
{{- with $v.local.connectTimeout -}}{{- $a = append $a (printf "--local-connect-timeout=%s" .) -}}{{- end -}}
{{- with $v.local.tcpIdleTimeout -}}{{- $a = append $a (printf "--local-tcp-idle-timeout=%s" .) -}}{{- end -}}
{{- with $v.local.maxTcpConnections -}}{{- $a = append $a (printf "--local-max-tcp-connections=%d" (int64 .)) -}}{{- end -}}
{{- with $v.local.maxTcpConnectionsPerSource -}}{{- $a = append $a (printf "--local-max-tcp-connections-per-source=%d" (int64 .)) -}}{{- end -}}
{{- with $v.local.maxUdpFlows -}}{{- $a = append $a (printf "--local-max-udp-flows=%d" (int64 .)) -}}{{- end -}}
{{- with $v.local.maxUdpFlowsTotal -}}{{- $a = append $a (printf "--local-max-udp-flows-total=%d" (int64 .)) -}}{{- end -}}
{{- else if eq $v.provider "memory" -}}
{{- with $v.memory.ipPool -}}{{- $a = append $a (printf "--memory-ip-pool=%s" .) -}}{{- end -}}
{{- end -}}
{{- range $v.extraArgs -}}{{- $a = append $a . -}}{{- end -}}
{{- toJson $a -}}
{{- end -}}

{{/* The container's securityContext: the restricted Pod Security profile, except in
     hostNetwork mode where NET_BIND_SERVICE is added (and uid 0 holds it, see values.yaml). */}}
{{- define "cloudlb.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
seccompProfile: {type: RuntimeDefault}
{{- if and (include "cloudlb.hostNetwork" .) .Values.local.runAsRoot }}
runAsNonRoot: false
runAsUser: 0
runAsGroup: 0
{{- else }}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
{{- end }}
capabilities:
  drop: [ALL]
  {{- if include "cloudlb.hostNetwork" . }}
  add: [NET_BIND_SERVICE]
  {{- end }}
{{- end -}}

{{/* What the controllers read and write in the namespaces they watch. Verbs are exactly the
       calls the code makes: list+watch for the caches (no get), patch for finalizers,
       annotations and status (never update), create+patch for events.k8s.io Events. */ -}}
{{- define "cloudlb.objectRules" -}}
{{- if has "service" .Values.controllers }}
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch, patch]
- apiGroups: [""]
  resources: [services/status]
  verbs: [patch]
{{- end }}
{{- if include "cloudlb.ingressEnabled" . }}
{{- /* Ingress backends are Services: the Ingress controller watches them too (read only). */}}
{{- if not (has "service" .Values.controllers) }}
- apiGroups: [""]
  resources: [services]
  verbs: [list, watch]
{{- end }}
- apiGroups: [networking.k8s.io]
  resources: [ingresses]
  verbs: [list, watch, patch]
- apiGroups: [networking.k8s.io]
  resources: [ingresses/status]
  verbs: [patch]
# TLS certificates of Ingresses (only type kubernetes.io/tls is listed, by field selector).
- apiGroups: [""]
  resources: [secrets]
  verbs: [list, watch]
{{- end }}
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}
