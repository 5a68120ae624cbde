{{/*
Names, labels, images and TLS material shared by the templates.
*/}}

{{/* The chart's name, or nameOverride. */}}
{{- define "stockade.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 46 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object's name: fullnameOverride, else the release name
when it already contains the chart's name, else "<release>-<name>". At most 46
characters, so that "<fullname>-operator-metrics" is still a valid Service
name (63); a longer one fails instead of being cut (two releases could
otherwise end up with the same names).
*/}}
{{- define "stockade.fullname" -}}
{{- $name := include "stockade.name" . -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else if contains $name .Release.Name -}}
{{- $full = .Release.Name -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- $full = trimSuffix "-" $full -}}
{{- if gt (len $full) 46 -}}
{{- fail (printf "the objects' name prefix %q is %d characters long, at most 46 fit (\"<prefix>-operator-metrics\" must be a valid Service name): set fullnameOverride or use a shorter release name" $full (len $full)) -}}
{{- end -}}
{{- $full -}}
{{- end -}}

{{- define "stockade.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object. Argument: (dict "root" $ "component" "operator").
*/}}
{{- define "stockade.labels" -}}
helm.sh/chart: {{ include "stockade.chart" .root }}
{{ include "stockade.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: stockade
{{- end -}}

{{/* The labels a selector matches. Same argument as stockade.labels. */}}
{{- define "stockade.selectorLabels" -}}
app.kubernetes.io/name: {{ include "stockade.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image: (dict "root" $ "name" "stockade-operator"). */}}
{{- define "stockade.image" -}}
{{- $img := .root.Values.image -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $img.registry) .name (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}

{{/* The operator's gRPC Service, as the node agents dial it. */}}
{{- define "stockade.operatorAddress" -}}
{{- printf "%s-operator.%s.svc:9443" (include "stockade.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The Secrets the pods mount, by tls.mode. */}}
{{- define "stockade.operatorTLSSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.mode=secret needs tls.operatorSecret: the name of an existing Secret in the release namespace holding ca.crt (the CA of the node client certificates), tls.crt and tls.key (the operator's server certificate)" .Values.tls.operatorSecret -}}
{{- else -}}
{{- printf "%s-operator-tls" (include "stockade.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "stockade.nodeTLSSecret" -}}
{{- if eq .Values.tls.mode "secret" -}}
{{- required "tls.mode=secret needs tls.nodeSecret: the name of an existing Secret in the release namespace holding ca.crt (the CA of the operator's server certificate), tls.crt and tls.key (the node agents' client certificate)" .Values.tls.nodeSecret -}}
{{- else -}}
{{- printf "%s-node-tls" (include "stockade.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
tls.mode=generate: the CA and the two certificates, computed once per render
and kept on the root context under "stockadeTLS" (the Secrets and the pods'
checksum annotations must see the same keys). On an upgrade the Secrets of
the installed release are reused when both are complete and share their CA,
so certificates are not rotated; `lookup` finds nothing under `helm
template`, which then generates new ones. Values are base64, as in a
Secret's data.
*/}}
{{- define "stockade.tls.material" -}}
{{- if not (hasKey . "stockadeTLS") -}}
{{- $fullname := include "stockade.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $op := (lookup "v1" "Secret" $ns (printf "%s-operator-tls" $fullname)).data | default dict -}}
{{- $node := (lookup "v1" "Secret" $ns (printf "%s-node-tls" $fullname)).data | default dict -}}
{{- $m := dict -}}
{{- if and (index $op "ca.crt") (index $op "tls.crt") (index $op "tls.key") (index $node "tls.crt") (index $node "tls.key") (eq (index $op "ca.crt") (index $node "ca.crt" | default "")) -}}
{{- $m = dict "ca" (index $op "ca.crt") "serverCert" (index $op "tls.crt") "serverKey" (index $op "tls.key") "clientCert" (index $node "tls.crt") "clientKey" (index $node "tls.key") -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $fullname) 3650 -}}
{{- $sans := list (printf "%s-operator" $fullname) (printf "%s-operator.%s" $fullname $ns) (printf "%s-operator.%s.svc" $fullname $ns) (printf "%s-operator.%s.svc.cluster.local" $fullname $ns) -}}
{{- $server := genSignedCert (printf "%s-operator" $fullname) nil $sans 3650 $ca -}}
{{- $client := genSignedCert "stockade-node" nil nil 3650 $ca -}}
{{- $m = dict "ca" ($ca.Cert | b64enc) "serverCert" ($server.Cert | b64enc) "serverKey" ($server.Key | b64enc) "clientCert" ($client.Cert | b64enc) "clientKey" ($client.Key | b64enc) -}}
{{- end -}}
{{- $_ := set . "stockadeTLS" $m -}}
{{- end -}}
{{- end -}}

{{/*
Pod annotation that changes when the generated certificates change (the
operator reads its files only at start), so the pods restart with them.
Empty in the other modes.
*/}}
{{- define "stockade.tls.checksum" -}}
{{- if eq .Values.tls.mode "generate" -}}
{{- include "stockade.tls.material" . -}}
{{- $m := get . "stockadeTLS" -}}
stockade.dev/tls-checksum: {{ printf "%s/%s/%s" $m.ca $m.serverCert $m.clientCert | sha256sum | trunc 16 | quote }}
{{- end -}}
{{- end -}}

{{/*
Checks of values that the schema cannot express.
*/}}
{{- define "stockade.validate" -}}
{{- $paths := list .Values.node.prefix (dir .Values.node.containerdConfig) "/etc/stockade" .Values.node.store -}}
{{- if ne (len $paths) (len (uniq $paths)) -}}
{{- fail (printf "node.prefix (%s), the directory of node.containerdConfig (%s), /etc/stockade and node.store (%s) must be four different host directories" .Values.node.prefix (dir .Values.node.containerdConfig) .Values.node.store) -}}
{{- end -}}
{{- if and .Values.admission.enabled (ne .Values.runtimeClass.name "stockade") -}}
{{- fail (printf "runtimeClass.name is %q, but the admission policies (admission.enabled) require runtimeClassName: stockade; keep the name stockade or set admission.enabled=false" .Values.runtimeClass.name) -}}
{{- end -}}
{{- end -}}

{{/*
securityContext of install and cleanup (stockade-node-install), as root.
node.restartContainerd: privileged, to enter the host's namespaces (pid 1's
mount, pid, ... namespaces: setns needs CAP_SYS_ADMIN, and
`systemctl restart containerd` runs there). Otherwise only:
  DAC_OVERRIDE  write and replace host files and directories whatever their
                mode (containerd's config.toml is often 0600 or owned by
                another user, /opt and /etc trees created by other tools).
  FOWNER        fchmod the files it writes to their final mode (0755
                binaries, 0644 configuration) and remove them on uninstall
                when they are not owned by root.
*/}}
{{- define "stockade.node.installSecurityContext" -}}
{{- if .Values.node.restartContainerd -}}
privileged: true
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
readOnlyRootFilesystem: true
{{- else -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  add: [DAC_OVERRIDE, FOWNER]
{{- end -}}
{{- end -}}

{{/*
The host directories install and cleanup change, each at /host<path>.
*/}}
{{- define "stockade.node.hostMounts" -}}
- name: host-prefix
  mountPath: /host{{ .Values.node.prefix }}
- name: host-containerd
  mountPath: /host{{ dir .Values.node.containerdConfig }}
- name: host-etc-stockade
  mountPath: /host/etc/stockade
- name: store
  mountPath: /host{{ .Values.node.store }}
{{- end -}}
