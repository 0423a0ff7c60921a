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

{{- define "pullpass.tag" -}}{{ .Values.image.tag | default .Chart.AppVersion }}{{- end -}}

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

{{- define "pullpass.agent.sourcesRole" -}}pullpass-agent-sources{{- end -}}

{{- /* The directory the agent needs of the kubelet's provider config: the path itself, or the
directory of a file (a file is replaced by rename, which needs its directory). */ -}}
{{- define "pullpass.agent.providerConfigDir" -}}
{{- $p := .Values.agent.providerConfig -}}
{{- if regexMatch "\\.(ya?ml|json)$" $p }}{{ dir $p }}{{ else }}{{ $p }}{{ end -}}
{{- end -}}
