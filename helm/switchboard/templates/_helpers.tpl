{{/*
Names and labels shared by every template.

`app.kubernetes.io/name` is always "switchboard" and `app.kubernetes.io/component`
is "operator" or "router": the NetworkPolicy the operator writes for each plugin
admits pods by exactly these labels (SWITCHBOARD_OPERATOR_POD_LABELS and
SWITCHBOARD_ROUTER_POD_LABELS are rendered from the same helper), so they are
not configurable.
*/}}

{{/* The prefix of every object name: the release name, plus "-switchboard" unless it says so already. */}}
{{- define "switchboard.fullname" -}}
{{- if contains "switchboard" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-switchboard" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The name of a cluster-scoped object (ClusterRole, ClusterRoleBinding): unique per release namespace. */}}
{{- define "switchboard.clusterName" -}}
{{- printf "%s-%s-%s" (include "switchboard.fullname" .root) .root.Release.Namespace .component -}}
{{- end -}}

{{/* The name of the admission policy and of its binding (cluster-scoped). */}}
{{- define "switchboard.admissionPolicyName" -}}
{{- printf "%s-who-may-run-what" (include "switchboard.clusterName" (dict "root" . "component" "operator")) -}}
{{- end -}}

{{- define "switchboard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" -}}
{{- end -}}

{{/* Labels of every object the chart renders. */}}
{{- define "switchboard.commonLabels" -}}
helm.sh/chart: {{ include "switchboard.chart" . }}
app.kubernetes.io/part-of: switchboard
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* The identity of a component's pods, as the operator's NetworkPolicies select them. Call with (dict "component" "router"). */}}
{{- define "switchboard.podIdentityLabels" -}}
app.kubernetes.io/name: switchboard
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Deployment selector of a component. Call with (dict "root" $ "component" "router"). */}}
{{- define "switchboard.selectorLabels" -}}
{{ include "switchboard.podIdentityLabels" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* Labels of a component's objects and pods. Call with (dict "root" $ "component" "router"). */}}
{{- define "switchboard.labels" -}}
{{ include "switchboard.selectorLabels" . }}
{{ include "switchboard.commonLabels" .root }}
{{- end -}}

{{/* The image reference: repository, then @digest or :tag (appVersion when empty). */}}
{{- define "switchboard.image" -}}
{{- $image := .Values.image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* ServiceAccount name of a component. Call with (dict "root" $ "component" "router"). */}}
{{- define "switchboard.serviceAccountName" -}}
{{- $sa := (index .root.Values .component).serviceAccount -}}
{{- if $sa.create -}}
{{- default (printf "%s-%s" (include "switchboard.fullname" .root) .component) $sa.name -}}
{{- else -}}
{{- required (printf "%s.serviceAccount.name is required when %s.serviceAccount.create is false" .component .component) $sa.name -}}
{{- end -}}
{{- end -}}

{{/* The container security context of every Switchboard container: the restricted pod security level. */}}
{{- define "switchboard.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The pod security context. */}}
{{- define "switchboard.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A preferred anti-affinity spreading a component's replicas over nodes. Call with (dict "root" $ "component" "router"). */}}
{{- define "switchboard.defaultAffinity" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "switchboard.selectorLabels" . | nindent 12 }}
{{- end -}}

{{/* Egress every Switchboard pod needs: DNS and the API server. Call with the component's networkPolicy values. */}}
{{- define "switchboard.baseEgress" -}}
- ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
- ports:
    {{- range .apiServerPorts }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
  {{- with .apiServerCIDRs }}
  to:
    {{- range . }}
    - ipBlock: {cidr: {{ . | quote }}}
    {{- end }}
  {{- end }}
{{- end -}}

{{/* Egress to the gRPC port of plugin pods in any namespace (their own NetworkPolicy decides who gets in). */}}
{{- define "switchboard.pluginEgress" -}}
- to:
    - namespaceSelector: {}
      podSelector:
        matchLabels:
          app.kubernetes.io/component: plugin
          app.kubernetes.io/managed-by: switchboard-operator
  ports:
    - {protocol: TCP, port: 50051}
{{- end -}}

{{/* Whether RBAC is namespaced (watchNamespace set). */}}
{{- define "switchboard.namespaced" -}}
{{- if .Values.watchNamespace -}}true{{- end -}}
{{- end -}}

{{/* The namespaces plugins run in, as a JSON list: watchNamespace, or tenantNamespaces. */}}
{{- define "switchboard.servedNamespaces" -}}
{{- if .Values.watchNamespace -}}
{{- list .Values.watchNamespace | toJson -}}
{{- else -}}
{{- .Values.tenantNamespaces | default list | toJson -}}
{{- end -}}
{{- end -}}

{{/* What the operator may write where plugins run: children (server-side
apply creates them when new) and the Secrets resources name, read by name. */}}
{{- define "switchboard.operatorWriteRules" -}}
# Children, written by server-side apply (create when the object is new; a
# JSON merge patch repairs a keyed list someone broke by hand).
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "create", "patch"]
# A PodDisruptionBudget is deleted again when replicas drop to one.
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
# The Secrets resources name (credentials: key names and a checksum; licences),
# read one by one: never listed or watched, never written or logged.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* The Secret holding the ledger's database URL: the user's, or the evaluation database's. */}}
{{- define "switchboard.ledgerSecret" -}}
{{- if eq .Values.router.ledger.database "evaluation" -}}
{{- include "switchboard.fullname" . }}-ledger
{{- else -}}
{{- .Values.router.ledger.existingSecret -}}
{{- end -}}
{{- end -}}
