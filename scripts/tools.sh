# What uvdeploy is made of, written once: sourced by common.sh, install and uvdeploy.
# The tools, as cargo builds them (target/release) and install puts them (PREFIX/lib/uvdeploy/bin):
tools=(checkout detect uvbuild flowctl launcher healthcheck otoroshi-challenge plan-export uvsupervise uvkept uvcontrol uvaddons)
# The commands of `uvdeploy` (scripts/uvdeploy says which script or tool runs each):
commands=(deploy plan image status stop kept addons export detect checkout uvbuild flowctl launcher healthcheck otoroshi-challenge)
