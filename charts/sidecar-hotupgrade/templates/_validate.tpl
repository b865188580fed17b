{{- /*
Cross-field rules on `injection` that JSON schema cannot express. A value that breaks one would reach
every injected pod (the API server then rejects each pod, or every upgrade loses requests), so the
install fails here, naming the values. The webhook checks the same rules again (webhook/config.py) at
startup, `check-config` and every reload.
*/ -}}

{{/* A Kubernetes quantity ("64Mi", "100m", "1e3", 2) as a float, printed; k8s.io/apimachinery resource.Quantity. */}}
{{- define "hotupgrade.quantity" -}}
{{- $text := toString . -}}
{{- $factors := dict "n" 1e-9 "u" 1e-6 "m" 1e-3 "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "P" 1e15 "E" 1e18 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "Pi" 1125899906842624.0 "Ei" 1152921504606846976.0 -}}
{{- $suffix := regexFind "([KMGTPE]i|[numkMGTPE])$" $text -}}
{{- mulf (float64 (trimSuffix $suffix $text)) (get $factors $suffix) -}}
{{- end }}

{{- define "hotupgrade.validateInjection" -}}
{{- $inj := .Values.injection }}
{{- /* Requests above limits: the API server refuses the container ("must be less than or equal to limit"). */}}
{{- $limits := $inj.resources.limits | default dict }}
{{- range $name, $request := $inj.resources.requests | default dict }}
{{- if hasKey $limits $name }}
{{- $limit := get $limits $name }}
{{- if gt (float64 (include "hotupgrade.quantity" $request)) (float64 (include "hotupgrade.quantity" $limit)) }}
{{- fail (printf "injection.resources.requests.%s (%v) must be at most injection.resources.limits.%s (%v): the API server would reject every injected pod" $name $request $name $limit) }}
{{- end }}
{{- end }}
{{- end }}
{{- /* The old Envoy exits parentShutdownSeconds after its drain starts: with no margin it cuts what it still serves. */}}
{{- if lt (int $inj.parentShutdownSeconds) (add (int $inj.drainSeconds) 1) }}
{{- fail (printf "injection.parentShutdownSeconds (%v) must exceed injection.drainSeconds (%v): the old Envoy is terminated parentShutdownSeconds after its drain starts, so requests still in flight would be cut; use drainSeconds + the longest request + slack" $inj.parentShutdownSeconds $inj.drainSeconds) }}
{{- end }}
{{- /* The postStart hook must outlive the take-over deadline, or a failed take-over looks like a timeout. */}}
{{- if ge (int $inj.takeoverDeadlineSeconds) (int $inj.waitTimeoutSeconds) }}
{{- fail (printf "injection.takeoverDeadlineSeconds (%v) must be less than injection.waitTimeoutSeconds (%v): the postStart hook must see the failed take-over, not time out" $inj.takeoverDeadlineSeconds $inj.waitTimeoutSeconds) }}
{{- end }}
{{- /* Two listeners of the pair on one port: the second never starts. */}}
{{- $bound := dict }}
{{- range $key := list "statusA" "statusB" "admin" "listen" "tcpListen" }}
{{- $port := toString (get $inj.ports $key) }}
{{- if hasKey $bound $port }}
{{- fail (printf "injection.ports.%s (%s) is already used by injection.ports.%s" $key $port (get $bound $port)) }}
{{- end }}
{{- $_ := set $bound $port $key }}
{{- end }}
{{- range $key := list "upstream" "tcpUpstream" }}
{{- $port := toString (get $inj.ports $key) }}
{{- if hasKey $bound $port }}
{{- fail (printf "injection.ports.%s (%s) is the app's port but injection.ports.%s binds it" $key $port (get $bound $port)) }}
{{- end }}
{{- end }}
{{- /* Capture redirects each app port to the static bootstrap's listener that forwards to it (webhook/capture.py). */}}
{{- $capture := $inj.capture | default dict }}
{{- if eq ($capture.mode | default "none") "iptables" }}
{{- if ne $inj.bootstrap.mode "static" }}
{{- fail (printf "injection.capture.mode iptables needs injection.bootstrap.mode static (got %s): each captured port goes to the static bootstrap's listener that forwards to it" $inj.bootstrap.mode) }}
{{- end }}
{{- $forwarded := list (toString $inj.ports.upstream) (toString ($inj.ports.tcpUpstream | default $inj.ports.upstream)) }}
{{- range $port := $capture.ports | default list }}
{{- if not (has (toString $port) $forwarded) }}
{{- fail (printf "injection.capture.ports: %v is not a port Envoy forwards to (injection.ports.upstream %v, tcpUpstream %v)" $port $inj.ports.upstream ($inj.ports.tcpUpstream | default $inj.ports.upstream)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
