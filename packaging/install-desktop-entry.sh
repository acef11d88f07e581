#!/bin/sh
# Install vramdeck's desktop entry, icons and AppStream metadata for the current user
# (XDG_DATA_HOME, by default ~/.local/share). See docs/desktop.md.
#
#   packaging/install-desktop-entry.sh                          # the entry runs `vramdeck` on PATH
#   packaging/install-desktop-entry.sh /opt/vramdeck/vramdeck   # the entry runs a bundle
#
# Works from a source checkout and from a bundle's _internal/packaging/ folder alike.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
data=${XDG_DATA_HOME:-$HOME/.local/share}
command=${1:-vramdeck}

case "$command" in
  *" "*) exec_line="\"$command\"" ;;
  *) exec_line="$command" ;;
esac

mkdir -p "$data/applications" "$data/metainfo" "$data/icons/hicolor/scalable/apps"
sed -e "s|^Exec=.*|Exec=$exec_line|" -e "s|^TryExec=.*|TryExec=$command|" \
  "$here/vramdeck.desktop" > "$data/applications/vramdeck.desktop"
cp -R "$root/resources/icons/hicolor/." "$data/icons/hicolor/"
cp "$root/resources/icons/vramdeck.svg" "$data/icons/hicolor/scalable/apps/vramdeck.svg"
cp "$here/io.github.vramdeck.metainfo.xml" "$data/metainfo/"

# Menus and icon themes notice new files sooner with these; both are optional.
if command -v update-desktop-database >/dev/null 2>&1; then
  update-desktop-database -q "$data/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null 2>&1; then
  gtk-update-icon-cache -q -t "$data/icons/hicolor" || true
fi
echo "installed $data/applications/vramdeck.desktop (runs: $command)"
