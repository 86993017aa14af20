# gnuplot docs/results/fashion-mnist-train.gp, run in docs/results: the curve of fashion-mnist.md
set terminal pngcairo size 800,480
set output 'fashion-mnist-train.png'
set datafile separator "\t"
set key bottom right
set xlabel "epoch"
set ylabel "validation accuracy (BN-recalibrated), %"
set yrange [80:96]
set grid
set title "recipes/fashion-mnist.ini (deps, shrink at epoch 12 of 24)"
plot 'fashion-mnist-train.tsv' using (strcol(1) eq "epoch" ? $2 : 1/0):(100*$10) with linespoints title "largest", \
     '' using (strcol(1) eq "epoch" ? $2 : 1/0):(100*$11) with linespoints title "smallest"
