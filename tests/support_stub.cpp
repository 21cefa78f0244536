// Keeps tca_test_support non-empty before any support file exists.
namespace tca::test { void support_anchor() {} }
