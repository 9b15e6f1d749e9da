"""Real data loaders: Fashion-MNIST, image folders, Instacart orders, MovieLens-100K."""
