"""Results: the store of scored architectures, their ranking and selections, and the writing of
a method's derived architecture as a search result.

Below both the methods and the search: each writes its results through this package, and the
reports read them from it. Import from the modules themselves (`nas.results.store`, ...): this
package imports none of them, so `nas.results.store` (standard library only) loads without torch.
"""
