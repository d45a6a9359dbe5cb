#!/usr/bin/env bash
# Makes the video fixtures of tests/it/video.rs from the picture fixtures (ffmpeg 5.1, Debian 12;
# committed, so the tests do not depend on the encoder's version):
# - scenes.mp4: H.264, 6 s at 10 fps, 320x240: astronaut for 2 s, then coffee, then rocket; a key
#   frame every second; dated, placed (Lisbon) and with a phone's make and model, as an iPhone
#   writes them.
# - upright.mov: the same scenes stored sideways (240x320) with a display rotation of 90°, as
#   phones film in portrait.
# - scenes.webm: VP9 (what a browser without H.264 plays), no tags.
set -euo pipefail
cd "$(dirname "$0")/../tests/fixtures"
out=videos
scene() { # picture → 2 s of it, letterboxed into 320x240
    echo "-loop 1 -t 2 -framerate 10 -i images/$1"
}
fit='scale=320:240:force_original_aspect_ratio=decrease,pad=320:240:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p'
filter="[0:v]$fit[a];[1:v]$fit[b];[2:v]$fit[c];[a][b][c]concat=n=3:v=1"
# shellcheck disable=SC2046
ffmpeg -y -v error $(scene astronaut.jpg) $(scene coffee.png) $(scene rocket.jpg) \
    -filter_complex "$filter" -c:v libx264 -preset medium -crf 20 -g 10 -keyint_min 10 -sc_threshold 0 \
    -movflags use_metadata_tags -metadata creation_time=2024-07-14T18:03:11Z \
    -metadata com.apple.quicktime.location.ISO6709=+38.7223-009.1393+012.000/ \
    -metadata com.apple.quicktime.make=Apple -metadata "com.apple.quicktime.model=iPhone 15" \
    -map_metadata -1 -fflags +bitexact "$out/scenes.mp4"
# Turned a quarter counterclockwise and stored so; the rotate tag (a stream copy keeps it) says
# how to show it upright.
sideways=$(mktemp --suffix=.mp4)
ffmpeg -y -v error -i "$out/scenes.mp4" -vf transpose=2 -c:v libx264 -preset medium -crf 20 -g 10 \
    -keyint_min 10 -sc_threshold 0 -fflags +bitexact "$sideways"
ffmpeg -y -v error -i "$sideways" -c copy -metadata:s:v:0 rotate=270 -fflags +bitexact "$out/upright.mov"
rm "$sideways"
ffmpeg -y -v error -i "$out/scenes.mp4" -c:v libvpx-vp9 -b:v 0 -crf 30 -g 10 -map_metadata -1 \
    -fflags +bitexact "$out/scenes.webm"
ls -l "$out"
