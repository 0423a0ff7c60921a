{{- define "pullpass.labels" -}}
app.kubernetes.io/name: pullpass
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "pullpass.webhook.selector" -}}
app.kubernetes.io/name: pullpass
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: webhook
{{- end -}}

{{- define "pullpass.webhook.name" -}}pullpass-webhook{{- end -}}

{{- define "pullpass.controller.selector" -}}
app.kubernetes.io/name: pullpass
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "pullpass.controller.name" -}}pullpass-controller{{- end -}}

{{- define "pullpass.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

{{/* pullpass.image (list $ REPOSITORY DIGEST): REPOSITORY:TAG, pinned @DIGEST when one is set. */}}
{{- define "pullpass.image" -}}
{{- $root := index . 0 -}}
{{ index . 1 }}:{{ include "pullpass.tag" $root }}{{ with index . 2 }}@{{ . }}{{ end }}
{{- end -}}

{{- define "pullpass.restrictedContainer" -}}
securityContext:
  allowPrivilegeEscalation: false
  readOnlyRootFilesystem: true
  runAsNonRoot: true
  runAsUser: 65532
  runAsGroup: 65532
  capabilities:
    drop: [ALL]
  seccompProfile:
    type: RuntimeDefault
{{- end -}}

{{- define "pullpass.agent.selector" -}}
app.kubernetes.io/name: pullpass
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "pullpass.agent.name" -}}pullpass-agent{{- end -}}

{{- /* What the node agents serve (pkg/nodedelivery): none, cluster (Cluster-scope registries,
in provider or legacy mode) or tokens (also Namespaced registries with delivery Node). */ -}}
{{- define "pullpass.nodeDelivery" -}}
{{- if not .Values.agent.enabled -}}none
{{- else if and (eq .Values.agent.mode "provider") .Values.agent.serviceAccountTokens.enabled -}}tokens
{{- else -}}cluster
{{- end -}}
{{- end -}}

{{- define "pullpass.agent.nodeCredentialsRole" -}}pullpass-agent-node-credentials{{- end -}}

{{- /* The node Secrets the controller writes what the agents serve into, and the only Secrets the
agents may read: pkg/nodesecret's Name and its shards (nodesecret.MaxShards of them). */ -}}
{{- define "pullpass.nodeCredentialsSecrets" -}}[pullpass-node-credentials, pullpass-node-credentials-1, pullpass-node-credentials-2, pullpass-node-credentials-3]{{- end -}}

{{- /* The directory the agent needs of the kubelet's provider config: the path itself, or the
directory of a file (a file is replaced by rename, which needs its directory). */ -}}
{{- define "pullpass.agent.providerConfigDir" -}}
{{- $p := .Values.agent.providerConfig -}}
{{- if regexMatch "\\.(ya?ml|json)$" $p }}{{ dir $p }}{{ else }}{{ $p }}{{ end -}}
{{- end -}}

{{- /* How the ServiceMonitor and PodMonitor label what they scrape, the same for both, so the alerts
select the same series either way:
- honorLabels: pullpass's own `namespace` label (the namespace of a failing pod) wins over the
  target's; without it Prometheus renames it `exported_namespace` and every pull failure would be
  grouped under pullpass's own namespace.
- job is pullpass-webhook, pullpass-controller or pullpass-agent (the pod's component), whichever
  monitor found it;
- node is the node the pod runs on (which kubelet to restart, which node serves what).
Relabelings from the values come last. */ -}}
{{- define "pullpass.scrapeLabels" -}}
honorLabels: true
relabelings:
  - sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_component]
    targetLabel: job
    replacement: pullpass-$1
  - sourceLabels: [__meta_kubernetes_pod_node_name]
    targetLabel: node
{{- with .extra }}
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- /* The rule groups of files/alerts.yaml with the overrides of metrics.prometheusRule: per alert,
`for` and `window` (every range, offset and `time() - SECONDS` of its expression), and the
runbook links' base. */ -}}
{{- define "pullpass.alertRules" -}}
{{- $pr := .Values.metrics.prometheusRule -}}
{{- $file := .Files.Get "files/alerts.yaml" | fromYaml -}}
{{- $names := list -}}
{{- range $g := $file.groups -}}
{{- range $r := $g.rules -}}
{{- $names = append $names $r.alert -}}
{{- with get $pr.alerts $r.alert -}}
{{- if .for }}{{ $_ := set $r "for" .for }}{{ end -}}
{{- if .window -}}
{{- $secs := mul (regexFind "^[0-9]+" .window | atoi) (get (dict "s" 1 "m" 60 "h" 3600 "d" 86400 "w" 604800 "y" 31536000) (regexFind "[a-z]$" .window)) -}}
{{- $expr := regexReplaceAll "\\[[0-9]+[smhdwy]\\]" $r.expr (printf "[%s]" .window) -}}
{{- $expr = regexReplaceAll "offset [0-9]+[smhdwy]" $expr (printf "offset %s" .window) -}}
{{- $_ := set $r "expr" (regexReplaceAll "time\\(\\) - [0-9]+" $expr (printf "time() - %d" $secs)) -}}
{{- end -}}
{{- end -}}
{{- if and $pr.runbookURL $r.annotations.runbook_url -}}
{{- $_ := set $r.annotations "runbook_url" (printf "%s#%s" $pr.runbookURL (lower $r.alert)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $name, $_ := $pr.alerts -}}
{{- if not (has $name $names) }}{{ fail (printf "metrics.prometheusRule.alerts.%s: no such alert (alerts: %s)" $name (join ", " $names)) }}{{ end -}}
{{- end -}}
{{- toYaml $file -}}
{{- end -}}
