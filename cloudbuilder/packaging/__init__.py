"""OS packages (.deb, .rpm) made from dist/native: spec, backends (fpm, nfpm), build."""
