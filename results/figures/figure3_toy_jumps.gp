# re-plot from this folder: gnuplot toy_jumps.gp
set terminal pngcairo size 1000,680 font ',11'
set output 'toy_jumps.png'
set datafile separator ','
unset title
set label 101 'Figure 3 (section 4.1): CROWN jumps at w = 0, hBox at w = 1' at screen 0.5, screen 0.965 center front noenhanced font ',14'
set label 102 'x0 in [-1, 1], x11 = x12 = x0 + w, x2 = relu(x1), x31 = x22 + 1, x32 = x22 - x21; CROWN tie slope 0' at screen 0.5, screen 0.925 center front noenhanced font ',10'
set tmargin 5.0
set xlabel 'w' noenhanced
set ylabel 'lower bound' noenhanced
set xrange [-1:2]
set yrange [-2.25:2.25]
set key below horizontal noenhanced
set grid
plot 'toy_jumps.csv' skip 1 every ::0::101 using 1:2 with lines linecolor rgb '#1f77b4' linewidth 2.5 title 'CROWN: lower bound of x31', \
     'toy_jumps.csv' skip 1 every ::101::102 using 1:2 with points linecolor rgb '#1f77b4' pointtype 7 pointsize 1.2 notitle, \
     'toy_jumps.csv' skip 1 every ::102::304 using 1:2 with lines linecolor rgb '#1f77b4' linewidth 2.5 notitle, \
     'toy_jumps.csv' skip 1 every ::0::202 using 1:3 with lines linecolor rgb '#d62728' linewidth 2.5 title 'hBox: lower bound of x32', \
     'toy_jumps.csv' skip 1 every ::202::203 using 1:3 with points linecolor rgb '#d62728' pointtype 5 pointsize 1.2 notitle, \
     'toy_jumps.csv' skip 1 every ::203::304 using 1:3 with lines linecolor rgb '#d62728' linewidth 2.5 notitle
set terminal svg size 1000,680 font ',11'
set output 'toy_jumps.svg'
replot
