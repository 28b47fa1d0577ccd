#!/bin/bash
# Singh's table at his scale (docs/singh-2010.md), one cell per `ballast demo --paper` process, one at a
# time: linux and the June 2010 RFC at every balloon size first, then v4. A cell whose DIR/bN-POLICY.json
# exists is done, so running it again resumes; a cell's JSON appears only when its run ended well.
#   tools/singh_2010_cells.sh DIR
#   python tools/singh_2010_table.py DIR/b*.json $(printf -- '--results %s ' DIR/b*.csv) --png singh-2010.png
# (A cell's peak RSS is about 2.3 GB: run cells side by side only where memory allows.)
set -u
dir=${1:?usage: tools/singh_2010_cells.sh DIR}
mkdir -p "$dir" && cd "$dir" || exit 1
cells=("500 linux" "500 unmapped-2010-06" "750 linux" "750 unmapped-2010-06" "1000 linux" "1000 unmapped-2010-06"
       "1250 linux" "1250 unmapped-2010-06" "1500 linux" "1500 unmapped-2010-06"
       "500 unmapped-2011-01" "750 unmapped-2011-01" "1000 unmapped-2011-01" "1250 unmapped-2011-01"
       "1500 unmapped-2011-01")
for c in "${cells[@]}"; do
  set -- $c; mb=$1; policy=$2; name="b${mb}-${policy}"
  [ -s "$name.json" ] && continue
  rm -f "$name.csv" "$name.tmp.json"
  echo "$(date -u +%T) start $name"
  ballast demo --paper --workers 1 --workloads "balloon $mb MB" --policies "$policy" \
      --png '' --json "$name.tmp.json" --out "$name.csv" > "$name.log" 2>&1
  rc=$?
  echo "$(date -u +%T) end $name (exit $rc)"
  [ $rc -eq 0 ] && mv "$name.tmp.json" "$name.json"
done
