#!/usr/bin/env bash
# Installs what building and testing TransformerFusion needs, from Debian 12's packages (apt) only.
set -euo pipefail
pkgs=(cmake ninja-build g++ make git ccache pkg-config libgtest-dev clang libclang-rt-14-dev
      mesa-vulkan-drivers libvulkan-dev glslc vulkan-validationlayers vulkan-tools)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
