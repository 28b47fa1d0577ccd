module gothreads

go 1.19
