// lmf_torch's C++ part (built by scripts/torch.sh as the module lmf_torch_C): a loss is made by
// name from keyword options, and applied through lmf::libtorch (include/lmf/torch.hpp), whose
// autograd node computes value and gradient in one fused pass. lmf::Error is a
// std::invalid_argument, which pybind11 raises as ValueError with lmf's message.
#include <torch/extension.h>

#include <lmf/torch.hpp>

#include <set>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

/// Options by name; every key must be used (a misspelt option is an error, not a default).
class Kwargs {
 public:
  explicit Kwargs(const py::dict& d) : d_(d) {}
  template <class V>
  void get(const char* key, V& out) {
    if (!d_.contains(key)) return;
    used_.insert(key);
    py::object v = d_[key];
    if (v.is_none()) return;
    try {
      out = v.cast<V>();
    } catch (const py::cast_error&) {
      lmf::detail::raise(lmf::detail::message("option '", key, "' has the wrong type (", std::string(py::str(py::type::handle_of(v))),
                                              ")"));
    }
  }
  void done(const std::string& loss) const {
    for (auto item : d_) {
      const std::string k = py::str(item.first);
      if (!used_.count(k)) lmf::detail::raise(lmf::detail::message(loss, ": unknown option '", k, "'"));
    }
  }

 private:
  py::dict d_;
  std::set<std::string> used_;
};

Eigen::VectorXi to_counts(const std::vector<int64_t>& v) {
  Eigen::VectorXi c(Eigen::Index(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] > std::numeric_limits<int>::max())
      lmf::detail::raise(lmf::detail::message("count of class ", i, " is ", v[i], " (must be in [0, 2^31))"));
    c(Eigen::Index(i)) = int(v[i]);
  }
  return c;
}

lmf::Vector<double> to_vector(const std::vector<double>& v) {
  lmf::Vector<double> out(Eigen::Index(v.size()));
  for (std::size_t i = 0; i < v.size(); ++i) out(Eigen::Index(i)) = v[i];
  return out;
}

template <class O>
void common(Kwargs& k, O& o) {
  std::string reduction = "mean";
  std::vector<double> w;
  k.get("reduction", reduction);
  k.get("class_weights", w);
  k.get("ignore_index", o.ignore_index);
  o.reduction = lmf::parse_reduction(reduction);
  o.class_weights = to_vector(w);
}

lmf::Loss<double> make(const std::string& kind, const std::vector<int64_t>& counts_list, const py::dict& options) {
  Kwargs k(options);
  const Eigen::VectorXi counts = to_counts(counts_list);
  lmf::Loss<double> out = [&]() -> lmf::Loss<double> {
    if (kind == "CrossEntropyLoss") {
      lmf::CrossEntropyLoss<double>::Options o;
      common(k, o);
      k.get("label_smoothing", o.label_smoothing);
      return lmf::CrossEntropyLoss<double>(o);
    }
    if (kind == "FocalLoss") {
      lmf::FocalLoss<double>::Options o;
      common(k, o);
      k.get("gamma", o.gamma);
      std::string mean_over = "target_weights";
      k.get("mean_over", mean_over);
      if (mean_over == "rows")
        o.mean_over = lmf::MeanOver::rows;
      else if (mean_over != "target_weights")
        lmf::detail::raise(lmf::detail::message("FocalLoss: mean_over is '", mean_over, "' (expected 'target_weights' or 'rows')"));
      return lmf::FocalLoss<double>(o);
    }
    if (kind == "LDAMLoss") {
      lmf::LDAMLoss<double>::Options o;
      common(k, o);
      k.get("max_m", o.max_m);
      k.get("s", o.s);
      k.get("label_smoothing", o.label_smoothing);
      return lmf::LDAMLoss<double>(counts, o);
    }
    if (kind == "LMFLoss") {
      lmf::LMFLoss<double>::Options o;
      common(k, o);
      k.get("ldam_weight", o.ldam_weight);
      k.get("focal_weight", o.focal_weight);
      k.get("gamma", o.gamma);
      k.get("max_m", o.max_m);
      k.get("s", o.s);
      return lmf::LMFLoss<double>(counts, o);
    }
    if (kind == "LogitAdjustedLoss") {
      lmf::LogitAdjustedLoss<double>::Options o;
      common(k, o);
      k.get("tau", o.tau);
      k.get("label_smoothing", o.label_smoothing);
      return lmf::LogitAdjustedLoss<double>(counts, o);
    }
    if (kind == "BalancedSoftmaxLoss") {
      lmf::BalancedSoftmaxLoss<double>::Options o;
      common(k, o);
      k.get("label_smoothing", o.label_smoothing);
      return lmf::BalancedSoftmaxLoss<double>(counts, o);
    }
    if (kind == "VSLoss") {
      lmf::VSLoss<double>::Options o;
      common(k, o);
      k.get("gamma", o.gamma);
      k.get("tau", o.tau);
      k.get("label_smoothing", o.label_smoothing);
      return lmf::VSLoss<double>(counts, o);
    }
    std::int64_t ignore = -100;
    k.get("ignore_index", ignore);
    if (kind == "LMFLoss.official_code") return lmf::LMFLoss<double>::official_code(counts, ignore);
    if (kind == "LMFLoss.seed_code" || kind == "LMFLoss.seed_code_2024") {
      std::vector<double> w;
      k.get("class_weights", w);
      return kind == "LMFLoss.seed_code" ? lmf::LMFLoss<double>::seed_code(counts, to_vector(w), ignore)
                                         : lmf::LMFLoss<double>::seed_code_2024(counts, to_vector(w), ignore);
    }
    if (kind == "FocalLoss.repo_code" || kind == "FocalLoss.ldam_drw_code") {
      std::vector<double> w;
      double gamma = kind == "FocalLoss.repo_code" ? 2.0 : 1.0;
      std::string reduction = "mean";
      k.get("class_weights", w);
      k.get("gamma", gamma);
      if (kind == "FocalLoss.ldam_drw_code") return lmf::FocalLoss<double>::ldam_drw_code(to_vector(w), gamma, ignore);
      k.get("reduction", reduction);
      return lmf::FocalLoss<double>::repo_code(to_vector(w), gamma, lmf::parse_reduction(reduction), ignore);
    }
    lmf::detail::raise(lmf::detail::message("unknown loss '", kind, "'"));
  }();
  k.done(kind);
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "lmf's losses with fused analytic gradients (C++ part of lmf_torch)";
  m.def("simd_isa", [] { return std::string(lmf::simd_isa()); },
        "the instruction set lmf's CPU kernels use: 'avx512', 'avx2' or 'sse2' (run-time dispatch)");
  m.def("cpu_simd_isa", [] { return std::string(lmf::cpu_simd_isa()); },
        "the widest of those sets this CPU runs");
  m.def("cuda_built", [] { return lmf::libtorch::detail::cuda_backend() != nullptr; },
        "whether this build takes CUDA tensors (lmf's CUDA kernels were compiled in)");
  py::class_<lmf::libtorch::LossImpl, std::shared_ptr<lmf::libtorch::LossImpl>>(m, "Loss")
      .def(py::init([](const std::string& kind, const std::vector<int64_t>& counts, const py::dict& options) {
             return std::make_shared<lmf::libtorch::LossImpl>(make(kind, counts, options));
           }),
           py::arg("kind"), py::arg("counts"), py::arg("options"))
      .def("forward", &lmf::libtorch::LossImpl::forward, py::arg("logits"), py::arg("labels"))
      .def("forward", &lmf::libtorch::LossImpl::forward_with_totals, py::arg("logits"), py::arg("labels"),
           py::arg("totals"))
      .def("totals", &lmf::libtorch::LossImpl::totals, py::arg("logits"), py::arg("labels"))
      .def("set_threads", &lmf::libtorch::LossImpl::set_threads)
      .def(
          "set_class_weights",
          [](lmf::libtorch::LossImpl& l, const std::vector<double>& w) { l.set_class_weights(to_vector(w)); },
          py::arg("class_weights"))
      .def_property_readonly("classes", [](const lmf::libtorch::LossImpl& l) { return l.loss_double().classes(); });
  m.attr("version") = LMF_VERSION_STRING;
}
