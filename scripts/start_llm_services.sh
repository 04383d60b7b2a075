#!/usr/bin/env bash
# Start the three LLM services (8050, 8051, 8052) and check their health.
# Each runs the embedded model unless <SERVICE>_BACKEND (or LLM_BACKEND) says ollama/openai;
# Ollama must answer only for a service configured to use it. The three start at once.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The embedded model's prompt store is written here when a service stops and read back when it
# starts (services/llm/backends/prompt_file.py): agents' prompts are warm after a restart.
export LLM_PROMPT_STORE_DIR="${LLM_PROMPT_STORE_DIR:-$PAS_HOME/prompts}"

backend_of() { # backend_of PREFIX
    local var="${1}BACKEND"
    echo "${!var:-${LLM_BACKEND:-embedded}}"
}

started=()
for spec in "LLAMA31_8B_:llama31_8b:services.llm.llama31_8b_service:app:8050" \
            "TINYLLAMA_:tinyllama:services.llm.tinyllama_service:app:8051" \
            "TLC_:tlc_classifier:services.llm.tlc_classifier_service:app:8052"; do
    IFS=: read -r prefix name module attr default_port <<<"$spec"
    port_var="${prefix}PORT"
    port="${!port_var:-$default_port}"
    if [ "$(backend_of "$prefix")" = "ollama" ]; then
        url_var="${prefix}OLLAMA_BASE_URL"
        default_ollama=$([ "$name" = llama31_8b ] && echo http://localhost:11434 || echo http://localhost:11435)
        ollama="${!url_var:-${OLLAMA_BASE_URL:-$default_ollama}}"
        if ! pas_healthy "$ollama/api/tags"; then
            echo "warning: $name is configured for Ollama at $ollama, which does not answer;" >&2
            echo "         it will start and report 'degraded' until Ollama is up (ollama serve)." >&2
        fi
    fi
    pas_start "$name" "$module:$attr" "$port" "$prefix" &
    started+=($!)
done
pas_wait_all "${started[@]}"
